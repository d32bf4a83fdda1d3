//! Every recurrence kernel, assembled: a skeleton from `shaders/` (how the recurrent product
//! is computed and the steps driven: per step or persistent, tiled, register-blocked or with
//! subgroups) with a cell's epilogues (`shaders/cell_*.wgsl`: what a step does with the
//! product) spliced in at its `// {{cell}}` line. A [`Form`] names the skeleton's variant, a
//! [`Cell`] the epilogues; [`kernel`] assembles and declares each pair once.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::gpu::{Bind, Kernel};

/// The line of a skeleton the cell's WGSL replaces.
pub(crate) const CELL_MARK: &str = "// {{cell}}\n";
/// The line of the blocked skeleton that [`STATE_BUFFERS`] or [`STATE_TEXTURES`] replaces.
pub(crate) const STATE_MARK: &str = "// {{state}}\n";

/// How the blocked kernels read and write the state: in the buffers alone, or with texture
/// mirrors ([`Form::textured`]).
const STATE_BUFFERS: &str = include_str!("../../../shaders/state_buffers.wgsl");
const STATE_TEXTURES: &str = include_str!("../../../shaders/state_textures.wgsl");

const SIMPLE: &str = include_str!("../../../shaders/recurrence.wgsl");
const TILED: &str = include_str!("../../../shaders/recurrence_tiled.wgsl");
const BLOCKED: &str = concat!(
    include_str!("../../../shaders/blocks.wgsl"),
    include_str!("../../../shaders/recurrence_blocked.wgsl")
);
const BLOCKED_SUBGROUP: &str = include_str!("../../../shaders/recurrence_blocked_subgroup.wgsl");
const WAVEFRONT: &str = include_str!("../../../shaders/recurrence_wavefront.wgsl");

const BINDS: &[Bind] = &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Params];
/// The blocked kernels also take `wp` as a uniform window onto one section (`wu`), and a
/// window onto the token table (`tu`, read with `TOKENS`).
const BLOCKED_BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::Constant,
    Bind::Constant,
    Bind::Params,
];
/// The textured forms add the state mirror (read and written), then h_all's (or da's), wp's and
/// xu's (read).
const BLOCKED_TEXTURE_BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::Constant,
    Bind::Constant,
    Bind::TextureReadWrite,
    Bind::TextureRead,
    Bind::TextureRead,
    Bind::TextureRead,
    Bind::Params,
];

/// Writes W's padded layouts for the loops (no cell: the same for every one).
pub(crate) static PREPARE: Kernel = Kernel {
    name: "weights_prepare",
    source: include_str!("../../../shaders/weights.wgsl"),
    entry: "prepare",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Params, Bind::TextureRead],
    constants: &[],
};

/// [`PREPARE`] reading W from the parameters' texture mirror.
pub(crate) static PREPARE_TEX: Kernel = Kernel {
    name: "weights_prepare_tex",
    constants: &[("W_TEXTURE", 1.0)],
    ..PREPARE
};

/// What a step does with its recurrent product: the epilogues spliced into every skeleton.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Cell {
    /// `h = act(a)`, `dL/da = dL/dh act'(h)` (`shaders/cell_elman.wgsl`).
    Elman,
}

impl Cell {
    /// Every cell, for the validation tests.
    #[cfg(test)]
    pub const ALL: [Cell; 1] = [Cell::Elman];

    fn name(self) -> &'static str {
        match self {
            Cell::Elman => "elman",
        }
    }

    fn wgsl(self) -> &'static str {
        match self {
            Cell::Elman => include_str!("../../../shaders/cell_elman.wgsl"),
        }
    }
}

/// A skeleton's kernel family: which file and entry points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// `recurrence.wgsl` `step_*`: one step per dispatch, 4 x 4 blocks (CPU adapters, H not
    /// a multiple of 4).
    Step,
    /// `recurrence.wgsl` `seq_*`: persistent, the state in workgroup memory.
    Seq,
    /// `recurrence_tiled.wgsl`: one step per dispatch through workgroup tiles (GPUs).
    Tiled,
    /// `recurrence_blocked.wgsl` `blocked_*`: one step per dispatch, 8 x 8 register blocks
    /// (CPU adapters, H a multiple of 4).
    Blocked,
    /// `recurrence_blocked.wgsl` `blocked_seq_*`: their persistent form.
    BlockedSeq,
    /// `recurrence_wavefront.wgsl`: every layer of a stack in one persistent dispatch,
    /// forward only (the experiment `bench --wavefront` times).
    BlockedWave,
}

/// One variant of a skeleton: its family, its pass and the constants it is built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Form {
    pub family: Family,
    pub backward: bool,
    /// Seq: one SIMD group per workgroup (`SEQ_WG` 8, CPU adapters); Blocked: one row of
    /// invocations (`BLOCK_ROWS` 1, small grids).
    pub narrow: bool,
    /// BlockedSeq: 4 batch rows per invocation (`BLOCK_M` 4, small batches).
    pub four: bool,
    /// Blocked, BlockedSeq: W read through the uniform window (`W_UNIFORM`).
    pub uniform: bool,
    /// Blocked, BlockedSeq: the subgroup form (`recurrence_blocked_subgroup.wgsl`).
    pub subgroup: bool,
    /// BlockedSeq with subgroups: two groups of 64 units per pass over the state
    /// (`COL_PAIRS`, for H > 64; not with `row_pairs`).
    pub pairs: bool,
    /// BlockedSeq with subgroups: 16 batch rows per workgroup, two halves of 8 sharing each
    /// load of W (`ROW_PAIRS`; not with `pairs` or `four`).
    pub row_pairs: bool,
    /// Step, Seq, Blocked, BlockedSeq: a bidirectional layer's (`TWO_DIRS`: the directions'
    /// offsets read from the parameters; zero constants otherwise).
    pub two: bool,
    /// BlockedSeq forward with subgroups, one direction: the input projection gathered from
    /// the token table (`TOKENS`) instead of read from `xu`.
    pub tokens: bool,
    /// BlockedSeq with subgroups: everything read from texture mirrors of the buffers, and the
    /// state written to its mirror only (`shaders/state_textures.wgsl`).
    pub textured: bool,
}

impl Form {
    /// `family`'s plain forward or backward form.
    pub const fn of(family: Family, backward: bool) -> Self {
        Form {
            family,
            backward,
            narrow: false,
            four: false,
            uniform: false,
            subgroup: false,
            pairs: false,
            row_pairs: false,
            two: false,
            tokens: false,
            textured: false,
        }
    }

    /// Every form the drivers can choose.
    #[cfg(test)]
    pub fn all() -> Vec<Form> {
        let one = Self::all_one_direction();
        let two = one
            .iter()
            .filter(|f| ![Family::Tiled, Family::BlockedWave].contains(&f.family))
            .map(|&f| Form { two: true, ..f });
        one.iter().copied().chain(two).collect()
    }

    #[cfg(test)]
    fn all_one_direction() -> Vec<Form> {
        let mut all = Vec::new();
        for backward in [false, true] {
            all.push(Form::of(Family::Step, backward));
            if !backward {
                all.push(Form::of(Family::BlockedWave, backward));
            }
            all.push(Form::of(Family::Tiled, backward));
            for narrow in [false, true] {
                all.push(Form {
                    narrow,
                    ..Form::of(Family::Seq, backward)
                });
            }
            for subgroup in [false, true] {
                for uniform in [false, true] {
                    for narrow in [false, true] {
                        all.push(Form {
                            narrow,
                            uniform,
                            subgroup,
                            ..Form::of(Family::Blocked, backward)
                        });
                    }
                    for four in [false, true] {
                        // Pairs (of columns, or of 8 rows) exist only in the subgroup form.
                        let pairings: &[(bool, bool)] = match (subgroup, four) {
                            (false, _) => &[(false, false)],
                            (true, true) => &[(false, false), (true, false)],
                            (true, false) => &[(false, false), (true, false), (false, true)],
                        };
                        for &(pairs, row_pairs) in pairings {
                            let form = Form {
                                four,
                                uniform,
                                subgroup,
                                pairs,
                                row_pairs,
                                ..Form::of(Family::BlockedSeq, backward)
                            };
                            all.push(form);
                            if subgroup {
                                all.push(Form {
                                    textured: true,
                                    ..form
                                });
                            }
                            if subgroup && !backward {
                                for textured in [false, true] {
                                    all.push(Form {
                                        tokens: true,
                                        textured,
                                        ..form
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        all
    }

    fn skeleton(self) -> (&'static str, Option<&'static str>) {
        match self.family {
            Family::Step | Family::Seq => (SIMPLE, None),
            Family::Tiled => (TILED, None),
            Family::Blocked | Family::BlockedSeq => {
                (BLOCKED, self.subgroup.then_some(BLOCKED_SUBGROUP))
            }
            Family::BlockedWave => (BLOCKED, Some(WAVEFRONT)),
        }
    }

    /// The entry point, which is also the kernel's name after `recurrence_`.
    fn entry(self) -> String {
        let family = match self.family {
            Family::Step => "step",
            Family::Seq => "seq",
            Family::Tiled => "tiled",
            Family::Blocked => "blocked",
            Family::BlockedSeq => "blocked_seq",
            Family::BlockedWave => "blocked_wave",
        };
        let pass = if self.backward { "backward" } else { "forward" };
        let sg = if self.subgroup { "_sg" } else { "" };
        format!("{family}_{pass}{sg}")
    }

    fn constants(self) -> Vec<(&'static str, f64)> {
        let mut c = Vec::new();
        match self.family {
            Family::Seq if self.narrow => c.push(("SEQ_WG", 8.0)),
            Family::Blocked if self.narrow => c.push(("BLOCK_ROWS", 1.0)),
            Family::BlockedSeq if self.four => c.push(("BLOCK_M", 4.0)),
            _ => {}
        }
        if self.uniform {
            c.push(("W_UNIFORM", 1.0));
        }
        if self.pairs {
            c.push(("COL_PAIRS", 1.0));
        }
        if self.row_pairs {
            c.push(("ROW_PAIRS", 1.0));
        }
        if self.two {
            c.push(("TWO_DIRS", 1.0));
        }
        if self.tokens {
            c.push(("TOKENS", 1.0));
        }
        c
    }

    /// The kernel's name: `recurrence_` and the entry's family and pass, then `4`, `_narrow`,
    /// `_u`, `_pairs` or `_rows16`, `_sg`, `_bi`, `_tok` and `_tex` for its variant, and `+`
    /// the cell.
    fn name(self, cell: Cell) -> String {
        let family = self.entry().replace("_sg", "");
        let narrow = if self.narrow { "_narrow" } else { "" };
        let four = if self.four { "4" } else { "" };
        let uniform = if self.uniform { "_u" } else { "" };
        let pairs = match (self.pairs, self.row_pairs) {
            (true, _) => "_pairs",
            (_, true) => "_rows16",
            _ => "",
        };
        let sg = if self.subgroup { "_sg" } else { "" };
        let two = if self.two { "_bi" } else { "" };
        let tokens = if self.tokens { "_tok" } else { "" };
        let textured = if self.textured { "_tex" } else { "" };
        format!(
            "recurrence_{family}{four}{narrow}{uniform}{pairs}{sg}{two}{tokens}{textured}+{}",
            cell.name()
        )
    }
}

/// `skeleton` (and its continuation, a file appended to it) with `cell` at [`CELL_MARK`] and
/// the state in buffers alone at [`STATE_MARK`], if it has one.
pub(crate) fn assemble(skeleton: &str, more: Option<&str>, cell: Cell) -> String {
    assemble_state(skeleton, more, cell, false)
}

/// [`assemble`], the state read from texture mirrors where `textured`.
pub(crate) fn assemble_state(
    skeleton: &str,
    more: Option<&str>,
    cell: Cell,
    textured: bool,
) -> String {
    let state = if textured {
        STATE_TEXTURES
    } else {
        STATE_BUFFERS
    };
    let mut s = skeleton
        .replacen(CELL_MARK, cell.wgsl(), 1)
        .replacen(STATE_MARK, state, 1);
    if let Some(more) = more {
        s.push_str(more);
    }
    s
}

/// The kernel of `form` running `cell`: assembled and declared on first use, then the same
/// `&'static` kernel (and so the same cached pipeline) for every later call. Forms and cells
/// are finite, so what is kept is bounded.
pub(crate) fn kernel(form: Form, cell: Cell) -> &'static Kernel {
    static KERNELS: OnceLock<Mutex<HashMap<(Form, Cell), &'static Kernel>>> = OnceLock::new();
    let map = KERNELS.get_or_init(Default::default);
    // A poisoned lock only means another thread panicked mid-insert; the map is still valid.
    let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
    map.entry((form, cell)).or_insert_with(|| {
        let (skeleton, more) = form.skeleton();
        let binds = match form.family {
            _ if form.textured => BLOCKED_TEXTURE_BINDS,
            Family::Blocked | Family::BlockedSeq | Family::BlockedWave => BLOCKED_BINDS,
            _ => BINDS,
        };
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        Box::leak(Box::new(Kernel {
            name: leak(form.name(cell)),
            source: leak(assemble_state(skeleton, more, cell, form.textured)),
            entry: leak(form.entry()),
            binds,
            constants: Box::leak(form.constants().into_boxed_slice()),
        }))
    })
}

/// Every assembled recurrence kernel, for the validation tests.
#[cfg(test)]
pub(crate) fn all() -> Vec<&'static Kernel> {
    Cell::ALL
        .iter()
        .flat_map(|&cell| Form::all().into_iter().map(move |f| kernel(f, cell)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_skeleton_has_one_cell_mark_and_every_form_a_distinct_name() {
        for (file, text) in [
            ("recurrence.wgsl", SIMPLE),
            ("recurrence_tiled.wgsl", TILED),
            ("recurrence_blocked.wgsl", BLOCKED),
        ] {
            assert_eq!(text.matches(CELL_MARK).count(), 1, "{file}");
        }
        assert!(!BLOCKED_SUBGROUP.contains(CELL_MARK) && !WAVEFRONT.contains(CELL_MARK));
        let kernels = all();
        let mut names: Vec<&str> = kernels.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), kernels.len(), "two forms share a name");
        // The cell and the state are spliced in: no assembled source keeps a mark.
        assert_eq!(BLOCKED.matches(STATE_MARK).count(), 1);
        assert!(
            kernels
                .iter()
                .all(|k| !k.source.contains(CELL_MARK) && !k.source.contains(STATE_MARK))
        );
    }
}
