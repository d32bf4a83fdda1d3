//! Eigenvalues of a model's recurrent weights on the CPU, for looking at why it forgets.

use crate::error::{InputError, Result};

/// All eigenvalues of the row-major `n x n` matrix `w` (a layer's `W_hh`), as `(re, im)`
/// pairs, largest modulus first. O(n³): fine for the hidden sizes one draws (a few hundred).
pub fn eigenvalues(w: &[f32], n: usize) -> Result<Vec<(f64, f64)>> {
    if n == 0 || w.len() != n * n {
        return Err(InputError::Shape {
            arg: "w".into(),
            expected: format!("[{n}, {n}]"),
            got: vec![w.len()],
        }
        .into());
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(InputError::Invalid {
            arg: "w".into(),
            reason: "holds NaN or infinite values, which have no eigenvalues".into(),
        }
        .into());
    }
    let values: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
    let m = nalgebra::DMatrix::from_row_slice(n, n, &values);
    // A bounded number of QR sweeps: the unbounded default can loop forever on some inputs.
    // The tolerance grows with n: at f64::EPSILON itself the sweeps stall on matrices whose
    // eigenvalues cluster (a trained IRNN's W, near I), where n·ε converges in microseconds;
    // a looser one is the fallback, still far below what a picture shows.
    let Some(schur) = [f64::EPSILON * n as f64, 1e-10]
        .into_iter()
        .find_map(|eps| nalgebra::linalg::Schur::try_new(m.clone(), eps, 100 * n))
    else {
        return Err(InputError::Invalid {
            arg: "w".into(),
            reason: format!("its eigenvalues did not converge in {} iterations", 100 * n),
        }
        .into());
    };
    let mut out: Vec<(f64, f64)> = schur
        .complex_eigenvalues()
        .iter()
        .map(|c| (c.re, c.im))
        .collect();
    out.sort_by(|a, b| b.0.hypot(b.1).total_cmp(&a.0.hypot(a.1)));
    Ok(out)
}
