//! Every recurrence kernel: its shader file, entry point, bindings and override constants.

use crate::gpu::{Bind, Gpu, Kernel};

const BINDS: &[Bind] = &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Params];
/// The blocked kernels also take `wp` as a uniform window onto one section (`wu`).
const BLOCKED_BINDS: &[Bind] = &[
    Bind::Read,
    Bind::Read,
    Bind::ReadWrite,
    Bind::Constant,
    Bind::Params,
];
const SOURCE: &str = include_str!("../../../shaders/recurrence.wgsl");

pub(crate) static PREPARE: Kernel = Kernel {
    name: "weights_prepare",
    source: include_str!("../../../shaders/weights.wgsl"),
    entry: "prepare",
    binds: &[Bind::Read, Bind::ReadWrite, Bind::Params],
    constants: &[],
};

pub(crate) static STEP_FORWARD: Kernel = Kernel {
    name: "recurrence_step_forward",
    source: SOURCE,
    entry: "step_forward",
    binds: BINDS,
    constants: &[],
};

pub(crate) static STEP_BACKWARD: Kernel = Kernel {
    name: "recurrence_step_backward",
    source: SOURCE,
    entry: "step_backward",
    binds: BINDS,
    constants: &[],
};

const BLOCKED_SOURCE: &str = include_str!("../../../shaders/recurrence_blocked.wgsl");

pub(crate) static BLOCKED_FORWARD: Kernel = Kernel {
    name: "recurrence_blocked_forward",
    source: BLOCKED_SOURCE,
    entry: "blocked_forward",
    binds: BLOCKED_BINDS,
    constants: &[],
};

pub(crate) static BLOCKED_BACKWARD: Kernel = Kernel {
    name: "recurrence_blocked_backward",
    source: BLOCKED_SOURCE,
    entry: "blocked_backward",
    binds: BLOCKED_BINDS,
    constants: &[],
};

/// The blocked kernels with workgroups of one row of 8 invocations (8 batch rows).
pub(crate) static BLOCKED_FORWARD_NARROW: Kernel = Kernel {
    name: "recurrence_blocked_forward_narrow",
    constants: &[("BLOCK_ROWS", 1.0)],
    ..BLOCKED_FORWARD
};

pub(crate) static BLOCKED_BACKWARD_NARROW: Kernel = Kernel {
    name: "recurrence_blocked_backward_narrow",
    constants: &[("BLOCK_ROWS", 1.0)],
    ..BLOCKED_BACKWARD
};

pub(crate) static BLOCKED_SEQ_FORWARD: Kernel = Kernel {
    name: "recurrence_blocked_seq_forward",
    entry: "blocked_seq_forward",
    ..BLOCKED_FORWARD
};

pub(crate) static BLOCKED_SEQ_BACKWARD: Kernel = Kernel {
    name: "recurrence_blocked_seq_backward",
    entry: "blocked_seq_backward",
    ..BLOCKED_BACKWARD
};

pub(crate) static BLOCKED_SEQ_FORWARD4: Kernel = Kernel {
    name: "recurrence_blocked_seq_forward4",
    constants: &[("BLOCK_M", 4.0)],
    ..BLOCKED_SEQ_FORWARD
};

pub(crate) static BLOCKED_SEQ_BACKWARD4: Kernel = Kernel {
    name: "recurrence_blocked_seq_backward4",
    constants: &[("BLOCK_M", 4.0)],
    ..BLOCKED_SEQ_BACKWARD
};

/// The per-step blocked kernels reading W through the uniform window (H ≤ 128).
pub(crate) static BLOCKED_FORWARD_U: Kernel = Kernel {
    name: "recurrence_blocked_forward_u",
    constants: &[("W_UNIFORM", 1.0)],
    ..BLOCKED_FORWARD
};

pub(crate) static BLOCKED_BACKWARD_U: Kernel = Kernel {
    name: "recurrence_blocked_backward_u",
    constants: &[("W_UNIFORM", 1.0)],
    ..BLOCKED_BACKWARD
};

pub(crate) static BLOCKED_FORWARD_NARROW_U: Kernel = Kernel {
    name: "recurrence_blocked_forward_narrow_u",
    constants: &[("BLOCK_ROWS", 1.0), ("W_UNIFORM", 1.0)],
    ..BLOCKED_FORWARD
};

pub(crate) static BLOCKED_BACKWARD_NARROW_U: Kernel = Kernel {
    name: "recurrence_blocked_backward_narrow_u",
    constants: &[("BLOCK_ROWS", 1.0), ("W_UNIFORM", 1.0)],
    ..BLOCKED_BACKWARD
};

/// The persistent blocked kernels reading W through the uniform window (H ≤ 128).
pub(crate) static BLOCKED_SEQ_FORWARD_U: Kernel = Kernel {
    name: "recurrence_blocked_seq_forward_u",
    constants: &[("W_UNIFORM", 1.0)],
    ..BLOCKED_SEQ_FORWARD
};

pub(crate) static BLOCKED_SEQ_BACKWARD_U: Kernel = Kernel {
    name: "recurrence_blocked_seq_backward_u",
    constants: &[("W_UNIFORM", 1.0)],
    ..BLOCKED_SEQ_BACKWARD
};

pub(crate) static BLOCKED_SEQ_FORWARD4_U: Kernel = Kernel {
    name: "recurrence_blocked_seq_forward4_u",
    constants: &[("BLOCK_M", 4.0), ("W_UNIFORM", 1.0)],
    ..BLOCKED_SEQ_FORWARD
};

pub(crate) static BLOCKED_SEQ_BACKWARD4_U: Kernel = Kernel {
    name: "recurrence_blocked_seq_backward4_u",
    constants: &[("BLOCK_M", 4.0), ("W_UNIFORM", 1.0)],
    ..BLOCKED_SEQ_BACKWARD
};

const BLOCKED_SG_SOURCE: &str = concat!(
    include_str!("../../../shaders/recurrence_blocked.wgsl"),
    include_str!("../../../shaders/recurrence_blocked_subgroup.wgsl")
);

/// The subgroup form of a blocked kernel (`recurrence_blocked_subgroup.wgsl`): the same
/// bindings and constants, the entry point of that name with `_sg`.
macro_rules! subgroup_form {
    ($($name:ident = $base:ident, $label:literal, $entry:literal;)*) => {
        $(pub(crate) static $name: Kernel = Kernel {
            name: $label,
            source: BLOCKED_SG_SOURCE,
            entry: $entry,
            ..$base
        };)*
        /// Each blocked kernel and its subgroup form.
        pub(crate) static SUBGROUP_FORMS: &[(&Kernel, &Kernel)] = &[$((&$base, &$name)),*];
    };
}

subgroup_form! {
    BLOCKED_FORWARD_SG = BLOCKED_FORWARD, "recurrence_blocked_forward_sg", "blocked_forward_sg";
    BLOCKED_BACKWARD_SG = BLOCKED_BACKWARD, "recurrence_blocked_backward_sg", "blocked_backward_sg";
    BLOCKED_FORWARD_NARROW_SG = BLOCKED_FORWARD_NARROW,
        "recurrence_blocked_forward_narrow_sg", "blocked_forward_sg";
    BLOCKED_BACKWARD_NARROW_SG = BLOCKED_BACKWARD_NARROW,
        "recurrence_blocked_backward_narrow_sg", "blocked_backward_sg";
    BLOCKED_FORWARD_U_SG = BLOCKED_FORWARD_U, "recurrence_blocked_forward_u_sg", "blocked_forward_sg";
    BLOCKED_BACKWARD_U_SG = BLOCKED_BACKWARD_U,
        "recurrence_blocked_backward_u_sg", "blocked_backward_sg";
    BLOCKED_FORWARD_NARROW_U_SG = BLOCKED_FORWARD_NARROW_U,
        "recurrence_blocked_forward_narrow_u_sg", "blocked_forward_sg";
    BLOCKED_BACKWARD_NARROW_U_SG = BLOCKED_BACKWARD_NARROW_U,
        "recurrence_blocked_backward_narrow_u_sg", "blocked_backward_sg";
    BLOCKED_SEQ_FORWARD_SG = BLOCKED_SEQ_FORWARD,
        "recurrence_blocked_seq_forward_sg", "blocked_seq_forward_sg";
    BLOCKED_SEQ_BACKWARD_SG = BLOCKED_SEQ_BACKWARD,
        "recurrence_blocked_seq_backward_sg", "blocked_seq_backward_sg";
    BLOCKED_SEQ_FORWARD4_SG = BLOCKED_SEQ_FORWARD4,
        "recurrence_blocked_seq_forward4_sg", "blocked_seq_forward_sg";
    BLOCKED_SEQ_BACKWARD4_SG = BLOCKED_SEQ_BACKWARD4,
        "recurrence_blocked_seq_backward4_sg", "blocked_seq_backward_sg";
    BLOCKED_SEQ_FORWARD_U_SG = BLOCKED_SEQ_FORWARD_U,
        "recurrence_blocked_seq_forward_u_sg", "blocked_seq_forward_sg";
    BLOCKED_SEQ_BACKWARD_U_SG = BLOCKED_SEQ_BACKWARD_U,
        "recurrence_blocked_seq_backward_u_sg", "blocked_seq_backward_sg";
    BLOCKED_SEQ_FORWARD4_U_SG = BLOCKED_SEQ_FORWARD4_U,
        "recurrence_blocked_seq_forward4_u_sg", "blocked_seq_forward_sg";
    BLOCKED_SEQ_BACKWARD4_U_SG = BLOCKED_SEQ_BACKWARD4_U,
        "recurrence_blocked_seq_backward4_u_sg", "blocked_seq_backward_sg";
}

/// `k`'s subgroup form where `gpu` runs the subgroup kernels, else `k`.
pub(super) fn form_for(gpu: &Gpu, k: &'static Kernel) -> &'static Kernel {
    if gpu.subgroup_kernels()
        && let Some((_, sg)) = SUBGROUP_FORMS.iter().find(|(b, _)| std::ptr::eq(*b, k))
    {
        return sg;
    }
    k
}

const TILED_SOURCE: &str = include_str!("../../../shaders/recurrence_tiled.wgsl");

pub(crate) static TILED_FORWARD: Kernel = Kernel {
    name: "recurrence_tiled_forward",
    source: TILED_SOURCE,
    entry: "tiled_forward",
    binds: BINDS,
    constants: &[],
};

pub(crate) static TILED_BACKWARD: Kernel = Kernel {
    name: "recurrence_tiled_backward",
    source: TILED_SOURCE,
    entry: "tiled_backward",
    binds: BINDS,
    constants: &[],
};

pub(crate) static SEQ_FORWARD: Kernel = Kernel {
    name: "recurrence_seq_forward",
    source: SOURCE,
    entry: "seq_forward",
    binds: BINDS,
    constants: &[],
};

/// The persistent kernels with one SIMD group per workgroup, for CPU adapters.
pub(crate) static SEQ_FORWARD_NARROW: Kernel = Kernel {
    name: "recurrence_seq_forward_narrow",
    constants: &[("SEQ_WG", 8.0)],
    ..SEQ_FORWARD
};

pub(crate) static SEQ_BACKWARD_NARROW: Kernel = Kernel {
    name: "recurrence_seq_backward_narrow",
    constants: &[("SEQ_WG", 8.0)],
    ..SEQ_BACKWARD
};

pub(crate) static SEQ_BACKWARD: Kernel = Kernel {
    name: "recurrence_seq_backward",
    source: SOURCE,
    entry: "seq_backward",
    binds: BINDS,
    constants: &[],
};
