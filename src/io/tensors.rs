//! Named host tensors read from and written to `.safetensors` files.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{FileError, Result};

/// Values of one tensor, in one of the dtypes these files use.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// 32-bit floats: parameters, inputs, outputs.
    F32(Vec<f32>),
    /// 64-bit floats: accepted on input (rounded to f32), used by reference fixtures.
    F64(Vec<f64>),
    /// 32-bit class ids.
    I32(Vec<i32>),
    /// 64-bit class ids (PyTorch's `long`).
    I64(Vec<i64>),
    /// A dtype this crate does not read, kept by name for error messages.
    Other(String),
}

/// A tensor on the host: shape and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The shape, outermost dimension first; `[]` for a scalar.
    pub shape: Vec<usize>,
    /// The values.
    pub values: Values,
}

impl HostTensor {
    /// An f32 tensor.
    pub fn f32(shape: &[usize], values: Vec<f32>) -> Self {
        Self {
            shape: shape.to_vec(),
            values: Values::F32(values),
        }
    }

    /// The dtype's safetensors name (`F32`, `I64`, ...).
    pub fn dtype_name(&self) -> &str {
        match &self.values {
            Values::F32(_) => "F32",
            Values::F64(_) => "F64",
            Values::I32(_) => "I32",
            Values::I64(_) => "I64",
            Values::Other(name) => name,
        }
    }

    /// The values as f32 when the dtype is a float (f64 is rounded), else `None`.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match &self.values {
            Values::F32(v) => Some(v.clone()),
            Values::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }

    /// The values as f64 when the dtype is a float, else `None`.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match &self.values {
            Values::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
            Values::F64(v) => Some(v.clone()),
            _ => None,
        }
    }

    /// The values as i64 when the dtype is an integer, else `None`.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match &self.values {
            Values::I32(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            Values::I64(v) => Some(v.clone()),
            _ => None,
        }
    }

    fn le_bytes(&self) -> Option<(Dtype, Vec<u8>)> {
        fn cat<const N: usize>(it: impl Iterator<Item = [u8; N]>) -> Vec<u8> {
            it.flatten().collect()
        }
        Some(match &self.values {
            Values::F32(v) => (Dtype::F32, cat(v.iter().map(|x| x.to_le_bytes()))),
            Values::F64(v) => (Dtype::F64, cat(v.iter().map(|x| x.to_le_bytes()))),
            Values::I32(v) => (Dtype::I32, cat(v.iter().map(|x| x.to_le_bytes()))),
            Values::I64(v) => (Dtype::I64, cat(v.iter().map(|x| x.to_le_bytes()))),
            Values::Other(_) => return None,
        })
    }
}

fn decode<const N: usize, T>(bytes: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunks_exact gives N bytes")))
        .collect()
}

/// Every tensor and the metadata of one `.safetensors` file, read into memory.
#[derive(Debug, Clone)]
pub struct TensorFile {
    path: String,
    tensors: BTreeMap<String, HostTensor>,
    metadata: HashMap<String, String>,
}

impl TensorFile {
    /// Reads the file at `path`.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| FileError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Parses the bytes of a safetensors file; `path` names it in errors.
    pub fn from_bytes(path: &str, bytes: &[u8]) -> Result<Self> {
        let format = |e: safetensors::SafeTensorError| FileError::Format {
            path: path.to_string(),
            reason: e.to_string(),
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(format)?;
        let st = SafeTensors::deserialize(bytes).map_err(format)?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values = match view.dtype() {
                Dtype::F32 => Values::F32(decode(data, f32::from_le_bytes)),
                Dtype::F64 => Values::F64(decode(data, f64::from_le_bytes)),
                Dtype::I32 => Values::I32(decode(data, i32::from_le_bytes)),
                Dtype::I64 => Values::I64(decode(data, i64::from_le_bytes)),
                other => Values::Other(format!("{other:?}")),
            };
            let shape = view.shape().to_vec();
            tensors.insert(name, HostTensor { shape, values });
        }
        Ok(Self {
            path: path.to_string(),
            tensors,
            metadata: meta.metadata().clone().unwrap_or_default(),
        })
    }

    /// The file's path, as errors name it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `__metadata__` strings.
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The tensor names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The tensor called `name`, if present.
    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    /// The tensor called `name`, or an error naming the file and the tensors it holds.
    pub fn require(&self, name: &str) -> Result<&HostTensor> {
        self.get(name).ok_or_else(|| {
            let present: Vec<&str> = self.names().collect();
            FileError::Missing {
                path: self.path.clone(),
                name: name.to_string(),
                present: if present.is_empty() {
                    "no tensors".into()
                } else {
                    present.join(", ")
                },
            }
            .into()
        })
    }

    /// The float tensor `name` as f32 (f64 rounded), or `None` when absent.
    pub fn floats(&self, name: &str) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        let Some(t) = self.get(name) else {
            return Ok(None);
        };
        let v = t
            .to_f32()
            .ok_or_else(|| self.dtype_err(name, t, "F32 or F64"))?;
        Ok(Some((t.shape.clone(), v)))
    }

    /// An error saying that tensor `name` has the wrong dtype.
    pub fn dtype_err(&self, name: &str, t: &HostTensor, expected: &str) -> crate::Error {
        FileError::Dtype {
            path: self.path.clone(),
            name: name.to_string(),
            got: t.dtype_name().to_string(),
            expected: expected.to_string(),
        }
        .into()
    }

    /// An error saying that tensor `name` has the wrong shape.
    pub fn shape_err(&self, name: &str, got: &[usize], expected: String) -> crate::Error {
        FileError::Shape {
            path: self.path.clone(),
            name: name.to_string(),
            got: got.to_vec(),
            expected,
        }
        .into()
    }

    /// An error saying that tensor or metadata key `name` holds a value not allowed.
    pub fn invalid(&self, name: &str, reason: String) -> crate::Error {
        FileError::Invalid {
            path: self.path.clone(),
            name: name.to_string(),
            reason,
        }
        .into()
    }
}

/// Writes `tensors` and `metadata` to `path` as a safetensors file, atomically: the bytes go
/// to a temporary file beside it, which is renamed over `path` only once complete.
pub fn write(
    path: impl AsRef<Path>,
    tensors: &[(String, HostTensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let shown = path.display().to_string();
    let mut encoded = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dtype, bytes) = t.le_bytes().ok_or_else(|| FileError::Invalid {
            path: shown.clone(),
            name: name.clone(),
            reason: format!("cannot write dtype {}", t.dtype_name()),
        })?;
        encoded.push((name.as_str(), dtype, t.shape.clone(), bytes));
    }
    let format = |e: safetensors::SafeTensorError| FileError::Format {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let mut views = Vec::with_capacity(encoded.len());
    for (name, dtype, shape, bytes) in &encoded {
        views.push((
            *name,
            TensorView::new(*dtype, shape.clone(), bytes).map_err(format)?,
        ));
    }
    let meta = (!metadata.is_empty()).then(|| metadata.clone());
    let bytes = safetensors::serialize(views, meta).map_err(format)?;
    write_atomic(path, &sorted_metadata(bytes))
}

/// The same file with its `__metadata__` entries in key order: safetensors writes them in a
/// hash map's order, which changes from run to run, and a seed should give the same file
/// byte for byte. The entries are the same strings, so the header keeps its length.
fn sorted_metadata(mut bytes: Vec<u8>) -> Vec<u8> {
    const KEY: &[u8] = b"{\"__metadata__\":{";
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return bytes;
    };
    let end = 8 + len as usize;
    if end > bytes.len() || !bytes[8..].starts_with(KEY) {
        return bytes;
    }
    // The metadata object: from its `{` to the matching `}`, skipping strings.
    let start = 8 + KEY.len() - 1;
    let (mut depth, mut in_str, mut escaped, mut stop) = (0usize, false, false, None);
    for (i, &c) in bytes[start..end].iter().enumerate() {
        match (in_str, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_str = false,
            (true, ..) => {}
            (false, _, b'"') => in_str = true,
            (false, _, b'{') => depth += 1,
            (false, _, b'}') => {
                depth -= 1;
                if depth == 0 {
                    stop = Some(start + i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(stop) = stop else { return bytes };
    let Ok(map) =
        serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&bytes[start..stop])
    else {
        return bytes;
    };
    match serde_json::to_vec(&map) {
        Ok(sorted) if sorted.len() == stop - start => {
            bytes[start..stop].copy_from_slice(&sorted);
            bytes
        }
        _ => bytes,
    }
}

/// A hidden file beside `path`, named after it and this process, ending in `.{ext}`: where a
/// file is written before it is renamed over `path`. `None` when `path` names no file.
pub fn temp_sibling(path: &Path, ext: &str) -> Option<PathBuf> {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name()?);
    name.push(format!(".{}.{ext}", std::process::id()));
    Some(path.with_file_name(name))
}

/// Writes `bytes` to a temporary sibling of `path`, syncs it, and renames it over `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| FileError::Io {
        path: path.display().to_string(),
        source,
    };
    let tmp = temp_sibling(path, "tmp").ok_or_else(|| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e).into());
    }
    Ok(())
}
