//! `shaders/rnn_step.wgsl`: one fused time step of the recurrence, forward and backward.

use super::{At, PlanBuilder, groups, u};
use crate::error::Result;
use crate::gpu::{Bind, Kernel};
use crate::model::Nonlinearity;

const BINDS: &[Bind] = &[Bind::Read, Bind::Read, Bind::ReadWrite, Bind::Uniform];

pub(crate) static STEP_FORWARD: Kernel = Kernel {
    name: "rnn_step_forward",
    source: include_str!("../../shaders/rnn_step.wgsl"),
    entry: "forward",
    binds: BINDS,
};

pub(crate) static STEP_BACKWARD: Kernel = Kernel {
    name: "rnn_step_backward",
    source: include_str!("../../shaders/rnn_step.wgsl"),
    entry: "backward",
    binds: BINDS,
};

/// Hidden units and batch rows one workgroup covers (`TJ`, `TB` in the shader).
const TJ: usize = 32;
const TB: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Step {
    batch: u32,
    hidden: u32,
    act: u32,
    w_off: u32,
    src_off: u32,
    prev_off: u32,
    out_off: u32,
    has_prev: u32,
}

/// Sizes shared by every step of one sequence.
pub(crate) struct Recurrence<'a> {
    pub batch: usize,
    pub hidden: usize,
    pub act: Nonlinearity,
    /// `W` (`weight_hh`), `[H, H]`.
    pub w: At<'a>,
}

impl Recurrence<'_> {
    fn step(&self, src_off: usize, prev_off: usize, out_off: usize, has_prev: bool) -> Step {
        Step {
            batch: u(self.batch),
            hidden: u(self.hidden),
            act: match self.act {
                Nonlinearity::Tanh => 0,
                Nonlinearity::Relu => 1,
            },
            w_off: u(self.w.off),
            src_off: u(src_off),
            prev_off: u(prev_off),
            out_off: u(out_off),
            has_prev: has_prev as u32,
        }
    }

    fn groups(&self) -> [u32; 3] {
        [groups(self.hidden, TJ), groups(self.batch, TB), 1]
    }

    /// Step `t` forward: `h_all[t + 1] = act(xu[t] + W h_all[t])`; `h_all` is `[T + 1, B, H]`.
    pub fn forward(
        &self,
        plan: &mut PlanBuilder,
        t: usize,
        xu: &wgpu::Buffer,
        h_all: &wgpu::Buffer,
    ) -> Result<()> {
        let bh = self.batch * self.hidden;
        let params = self.step(t * bh, t * bh, (t + 1) * bh, true);
        plan.push(
            &STEP_FORWARD,
            &[self.w.buf, xu, h_all],
            &params,
            self.groups(),
            true,
        )?;
        Ok(())
    }

    /// Step `t` backward, in place over `da[t]` (holding `dh_out[t]`): see the shader.
    pub fn backward(
        &self,
        plan: &mut PlanBuilder,
        t: usize,
        steps: usize,
        h_all: &wgpu::Buffer,
        da: &wgpu::Buffer,
    ) -> Result<()> {
        let bh = self.batch * self.hidden;
        let params = self.step((t + 1) * bh, (t + 1) * bh, t * bh, t + 1 < steps);
        plan.push(
            &STEP_BACKWARD,
            &[self.w.buf, h_all, da],
            &params,
            self.groups(),
            true,
        )?;
        Ok(())
    }
}
