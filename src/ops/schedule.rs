//! Where a run's copies between buffers and their texture mirrors are recorded: each copy into
//! a mirror as early, and each copy back into a buffer as late, as the dispatches around it
//! allow, so that copies share the breaks between compute passes; and a copy that repeats an
//! earlier one, with nothing written in between, is dropped. On lavapipe every break between
//! passes cost about 70 µs, and the character model's training step had seven.

use super::{Dispatch, TextureCopy};
use crate::gpu::Bind;

/// The buffers and textures one dispatch binds, by access.
#[derive(Clone, Default)]
pub(crate) struct Access {
    writes: Vec<wgpu::Buffer>,
    reads: Vec<wgpu::Buffer>,
    tex_writes: Vec<wgpu::TextureView>,
    tex_reads: Vec<wgpu::TextureView>,
}

impl Access {
    /// What a kernel with `binds` binds, its buffers and views in binding order.
    pub fn of(binds: &[Bind], buffers: &[wgpu::Buffer], views: &[wgpu::TextureView]) -> Self {
        let mut a = Self::default();
        let (mut b, mut v) = (buffers.iter().cloned(), views.iter().cloned());
        for kind in binds {
            match kind {
                Bind::Params => {}
                Bind::Read | Bind::Constant => a.reads.extend(b.next()),
                Bind::ReadWrite => a.writes.extend(b.next()),
                Bind::TextureRead => a.tex_reads.extend(v.next()),
                Bind::TextureReadWrite | Bind::TextureWrite => a.tex_writes.extend(v.next()),
            }
        }
        a
    }

    fn binds(&self, b: &wgpu::Buffer) -> bool {
        self.writes.contains(b) || self.reads.contains(b)
    }

    fn binds_view(&self, v: &wgpu::TextureView) -> bool {
        self.tex_writes.contains(v) || self.tex_reads.contains(v)
    }
}

/// Whether `e`'s rows include all of `c`'s.
fn covers(e: &TextureCopy, c: &TextureCopy) -> bool {
    match (e.rows, c.rows) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some((a, b)), Some((x, y))) => a <= x && y <= b,
    }
}

/// Whether the order of two copies matters: one writes what the other reads or writes, but
/// for two copies of one buffer into one mirror (the same values, wherever they land).
fn conflict(c: &TextureCopy, e: &TextureCopy) -> bool {
    let (same_buffer, same_view) = (c.buffer == e.buffer, c.view == e.view);
    match (c.back, e.back) {
        (false, false) => same_view && !same_buffer,
        (true, true) => same_buffer,
        _ => same_buffer || same_view,
    }
}

/// The copies to record before each of `all`'s dispatches, in order, and (at `all.len()`)
/// after the last: copies that ride before a dispatch in its plan, moved as far as they can
/// go towards the start (into mirrors) or the end (back into buffers) without passing a
/// dispatch that binds what they write or writes what they read, then gathered onto as few
/// places as their ranges allow. A copy that conflicts with another copy of the run stays
/// where it was.
pub(crate) fn schedule<'a>(all: &[&'a Dispatch]) -> Vec<Vec<&'a TextureCopy>> {
    let steps: Vec<_> = all.iter().map(|d| (&d.access, &d.before[..])).collect();
    place(&steps)
}

/// [`schedule`] for dispatches given as what each binds and the copies before it.
fn place<'a>(all: &[(&Access, &'a [TextureCopy])]) -> Vec<Vec<&'a TextureCopy>> {
    let n = all.len();
    let items: Vec<(usize, &TextureCopy)> = all
        .iter()
        .enumerate()
        .flat_map(|(i, (_, before))| before.iter().map(move |c| (i, c)))
        .collect();
    let access = |k: usize| all[k].0;
    // Each kept copy's earliest and latest place, by its index in `items`.
    let mut spans = Vec::with_capacity(items.len());
    for (j, &(i, c)) in items.iter().enumerate() {
        let pinned = items
            .iter()
            .enumerate()
            .any(|(k, &(_, e))| k != j && conflict(c, e));
        if c.back {
            let hi = if pinned {
                i
            } else {
                (i..n)
                    .find(|&k| access(k).binds(&c.buffer) || access(k).tex_writes.contains(&c.view))
                    .unwrap_or(n)
            };
            spans.push((i, hi, j));
            continue;
        }
        let unchanged = |from: usize| {
            (from..i).all(|k| {
                !access(k).writes.contains(&c.buffer) && !access(k).tex_writes.contains(&c.view)
            })
        };
        let repeat = !pinned
            && items[..j].iter().any(|&(p, e)| {
                !e.back && e.buffer == c.buffer && e.view == c.view && covers(e, c) && unchanged(p)
            });
        if repeat {
            continue;
        }
        let lo = if pinned {
            i
        } else {
            (0..i)
                .rev()
                .find(|&k| access(k).writes.contains(&c.buffer) || access(k).binds_view(&c.view))
                .map_or(0, |k| k + 1)
        };
        spans.push((lo, i, j));
    }
    // Before the first pass and after the last cost no break; the rest by their latest place,
    // each onto the latest place chosen already within its range, or its own latest.
    let mut at: Vec<Vec<usize>> = vec![Vec::new(); n + 1];
    let mut rest = Vec::new();
    for (lo, hi, j) in spans {
        if lo == 0 {
            at[0].push(j);
        } else if hi == n {
            at[n].push(j);
        } else {
            rest.push((lo, hi, j));
        }
    }
    rest.sort_by_key(|&(_, hi, j)| (hi, j));
    let mut points: Vec<usize> = Vec::new();
    for (lo, hi, j) in rest {
        let p = match points.iter().rev().find(|&&p| (lo..=hi).contains(&p)) {
            Some(&p) => p,
            None => {
                points.push(hi);
                hi
            }
        };
        at[p].push(j);
    }
    at.into_iter()
        .map(|mut js| {
            // In the order the plans asked for them.
            js.sort_unstable();
            js.into_iter().map(|j| items[j].1).collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Gpu;
    use crate::ops::state_texture::StateTexture;

    /// Copies move to the start (into mirrors) or the end (back) past dispatches that do not
    /// touch them, stop at those that do, share places, and a repeat with nothing written in
    /// between goes; a copy whose order against another copy matters stays put.
    #[test]
    fn copies_move_as_far_as_the_dispatches_allow_and_share_places() {
        let gpu = Gpu::new()
            .unwrap_or_else(|e| panic!("this test needs an adapter and none could be opened: {e}"));
        let buf = |what| gpu.storage_buffer(what, 4096).expect("a small buffer");
        let mirror = |what| {
            StateTexture::new(&gpu, what, 4096)
                .expect("a small mirror")
                .expect("within the adapter's limits")
        };
        let (x, y, z) = (buf("x"), buf("y"), buf("z"));
        let (mx, my, mz) = (mirror("x's"), mirror("y's"), mirror("z's"));
        let to = |b: &wgpu::Buffer, m: &StateTexture| TextureCopy::range(b, m, 0..4096, false);
        let back = |m: &StateTexture, b: &wgpu::Buffer| TextureCopy::range(b, m, 0..4096, true);
        use Bind::{Params, Read, ReadWrite, TextureRead, TextureReadWrite};
        // 0 writes x; 1 reads x's mirror; 2 writes y's mirror; 3 reads y; 4 reads z's mirror.
        let acc = [
            Access::of(&[ReadWrite, Params], std::slice::from_ref(&x), &[]),
            Access::of(&[Params, TextureRead], &[], &[mx.view().clone()]),
            Access::of(&[Params, TextureReadWrite], &[], &[my.view().clone()]),
            Access::of(&[Read, Params], std::slice::from_ref(&y), &[]),
            Access::of(&[Params, TextureRead], &[], &[mz.view().clone()]),
        ];
        let before = [
            vec![],
            // After 0 wrote x: cannot move.
            vec![to(&x, &mx)],
            // z's mirror: to the start. y's mirror back into y: before 3, which reads y.
            vec![to(&z, &mz)],
            vec![back(&my, &y)],
            // A repeat of the copy before 2 (z untouched since): dropped.
            vec![to(&z, &mz)],
        ];
        let steps: Vec<_> = acc.iter().zip(&before).map(|(a, b)| (a, &b[..])).collect();
        let placed = place(&steps);
        let at: Vec<usize> = placed.iter().map(Vec::len).collect();
        assert_eq!(at, [1, 1, 0, 1, 0, 0], "copies per place: {at:?}");
        assert!(placed[0][0].view == *mz.view() && placed[1][0].view == *mx.view());
        assert!(placed[3][0].back);

        // Back into y with nothing after it reading y or writing y's mirror: to the end.
        let acc2 = [
            Access::of(&[Params, TextureReadWrite], &[], &[my.view().clone()]),
            Access::of(&[Params], &[], &[]),
        ];
        let before2 = [vec![], vec![back(&my, &y)]];
        let steps: Vec<_> = acc2
            .iter()
            .zip(&before2)
            .map(|(a, b)| (a, &b[..]))
            .collect();
        let at: Vec<usize> = place(&steps).iter().map(Vec::len).collect();
        assert_eq!(at, [0, 0, 1], "copies per place: {at:?}");

        // Two copies into one mirror from two buffers: their order matters, neither moves.
        let before = [vec![], vec![], vec![to(&x, &mz)], vec![to(&z, &mz)], vec![]];
        let steps: Vec<_> = acc.iter().zip(&before).map(|(a, b)| (a, &b[..])).collect();
        let at: Vec<usize> = place(&steps).iter().map(Vec::len).collect();
        assert_eq!(at, [0, 0, 1, 1, 0, 0], "copies per place: {at:?}");

        // Into z's mirror after 2 wrote z, and back from y's mirror (written by 0) before 4
        // reads y: both before 3 (one break, not two).
        let acc = [
            Access::of(&[Params, TextureReadWrite], &[], &[my.view().clone()]),
            Access::of(&[Params], &[], &[]),
            Access::of(&[ReadWrite, Params], std::slice::from_ref(&z), &[]),
            Access::of(&[Params, TextureRead], &[], &[mz.view().clone()]),
            Access::of(&[Read, Params], std::slice::from_ref(&y), &[]),
        ];
        let before = [
            vec![],
            vec![back(&my, &y)],
            vec![],
            vec![to(&z, &mz)],
            vec![],
        ];
        let steps: Vec<_> = acc.iter().zip(&before).map(|(a, b)| (a, &b[..])).collect();
        let at: Vec<usize> = place(&steps).iter().map(Vec::len).collect();
        assert_eq!(at, [0, 0, 0, 2, 0, 0], "copies per place: {at:?}");
    }
}
