//! Character-level text: a vocabulary from the text itself, and parallel streams cut into
//! windows for truncated back-propagation through time.

use crate::error::{InputError, Result};
use crate::model::{Rnn, SplitMix64};
use crate::tensor::{ClassIds, Tensor};

/// A text as class ids over its own vocabulary of characters.
#[derive(Debug, Clone)]
pub struct Corpus {
    vocab: Vec<char>,
    ids: Vec<u32>,
}

impl Corpus {
    /// The vocabulary is every distinct character of `text`, sorted.
    pub fn new(text: &str) -> Result<Self> {
        let mut vocab: Vec<char> = text.chars().collect();
        vocab.sort_unstable();
        vocab.dedup();
        Self::with_vocab(text, vocab)
    }

    /// Encodes `text` with a given vocabulary (that of a saved model, when resuming).
    pub fn with_vocab(text: &str, vocab: Vec<char>) -> Result<Self> {
        if vocab.len() < 2 {
            return Err(InputError::Invalid {
                arg: "text".into(),
                reason: format!(
                    "has {} distinct characters; a language model needs at least 2",
                    vocab.len()
                ),
            }
            .into());
        }
        let ids = encode(&vocab, text)?;
        Ok(Self { vocab, ids })
    }

    /// The characters, in class-id order.
    pub fn vocab(&self) -> &[char] {
        &self.vocab
    }

    /// The text as class ids.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The first `1 - valid` of the ids for training, the rest held out for validation.
    pub fn split(&self, valid: f64) -> (&[u32], &[u32]) {
        let n = self.ids.len();
        let cut = n - ((n as f64 * valid.clamp(0.0, 0.5)) as usize).min(n);
        self.ids.split_at(cut)
    }
}

/// `text` as class ids of `vocab`; a character outside it is an error naming it.
pub fn encode(vocab: &[char], text: &str) -> Result<Vec<u32>> {
    text.chars()
        .map(|c| {
            vocab
                .iter()
                .position(|&v| v == c)
                .map(|i| i as u32)
                .ok_or_else(|| {
                    InputError::Invalid {
                        arg: "text".into(),
                        reason: format!("character {c:?} is not in the model's vocabulary"),
                    }
                    .into()
                })
        })
        .collect()
}

/// `B` contiguous streams of a token sequence, read `T` tokens at a time: window `k` of every
/// stream follows window `k - 1`, so the hidden state can be carried from one to the next.
#[derive(Debug, Clone)]
pub struct Streams<'a> {
    ids: &'a [u32],
    batch: usize,
    steps: usize,
    len: usize,
}

impl<'a> Streams<'a> {
    /// Cuts `ids` into `batch` streams read `steps` at a time.
    pub fn new(ids: &'a [u32], batch: usize, steps: usize) -> Result<Self> {
        let len = ids.len() / batch.max(1);
        if batch == 0 || steps == 0 || len < steps + 1 {
            return Err(InputError::Invalid {
                arg: "text".into(),
                reason: format!(
                    "{} characters do not fill {batch} streams of at least {} (batch x \
                     (seq-len + 1)); use a longer text or a smaller --batch or --seq-len",
                    ids.len(),
                    steps + 1
                ),
            }
            .into());
        }
        Ok(Self {
            ids,
            batch,
            steps,
            len,
        })
    }

    /// Windows per pass over the text.
    pub fn windows(&self) -> usize {
        (self.len - 1) / self.steps
    }

    /// Window `k`: input character ids `[T, B]` into `x` (token inputs, no one-hot matrix)
    /// and next-character ids `[T, B]` into `y`, both overwritten.
    pub fn window(&self, k: usize, x: &mut Vec<i64>, y: &mut Vec<i64>) {
        let (t_n, b_n) = (self.steps, self.batch);
        x.clear();
        x.resize(t_n * b_n, 0);
        y.clear();
        y.resize(t_n * b_n, 0);
        let start = (k % self.windows()) * t_n;
        for b in 0..b_n {
            let s = &self.ids[b * self.len..(b + 1) * self.len];
            for t in 0..t_n {
                let r = t * b_n + b;
                x[r] = i64::from(s[start + t]);
                y[r] = i64::from(s[start + t + 1]);
            }
        }
    }
}

/// Generates text from a character model one character at a time; the hidden state stays on
/// the GPU between steps, and only the `V` output scores come back for sampling.
pub struct Generator<'m> {
    rnn: &'m mut Rnn,
    vocab: Vec<char>,
    x: ClassIds,
    h: Tensor,
    logits: Option<Vec<f32>>,
    rng: SplitMix64,
}

impl<'m> Generator<'m> {
    /// A generator over `vocab` (the model's characters in class-id order), from a zero state.
    pub fn new(rnn: &'m mut Rnn, vocab: Vec<char>, seed: u64) -> Result<Self> {
        let c = *rnn.config();
        if c.input != vocab.len() || c.output != vocab.len() {
            return Err(InputError::Invalid {
                arg: "vocab".into(),
                reason: format!(
                    "has {} characters, but the model has {} inputs and {} outputs",
                    vocab.len(),
                    c.input,
                    c.output
                ),
            }
            .into());
        }
        let gpu = rnn.gpu().clone();
        // Generating is inference: no dropout.
        rnn.set_training(false);
        Ok(Self {
            x: ClassIds::from_slice(&gpu, &[1, 1], &[0])?,
            h: Tensor::zeros(&gpu, &[c.states(), 1, c.hidden])?,
            vocab,
            rnn,
            logits: None,
            rng: SplitMix64::new(seed),
        })
    }

    /// Runs one step with `ch` as input; its outputs score the next character.
    pub fn feed(&mut self, ch: char) -> Result<()> {
        let id = encode(&self.vocab, ch.encode_utf8(&mut [0; 4]))?[0];
        self.x.write(&[i64::from(id)])?;
        let out = self.rnn.forward(&self.x, Some(&self.h))?;
        self.h.copy_from(&out.h_n)?;
        self.logits = Some(out.output.to_vec()?);
        Ok(())
    }

    /// Draws the next character from `softmax(scores / temperature)` (the most likely one when
    /// `temperature` is 0) and feeds it back.
    pub fn next_char(&mut self, temperature: f32) -> Result<char> {
        let Some(logits) = self.logits.as_ref() else {
            return Err(InputError::Invalid {
                arg: "prime".into(),
                reason: "feed at least one character before sampling".into(),
            }
            .into());
        };
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(InputError::Invalid {
                arg: "temperature".into(),
                reason: format!("{temperature} is not a finite number >= 0"),
            }
            .into());
        }
        let best = logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > logits[b] { i } else { b });
        let id = if temperature == 0.0 {
            best
        } else {
            let m = f64::from(logits[best]);
            let w: Vec<f64> = logits
                .iter()
                .map(|&v| ((f64::from(v) - m) / f64::from(temperature)).exp())
                .collect();
            let mut u = self.rng.next_f64() * w.iter().sum::<f64>();
            w.iter()
                .position(|&p| {
                    u -= p;
                    u < 0.0
                })
                .unwrap_or(best)
        };
        let ch = self.vocab[id];
        self.feed(ch)?;
        Ok(ch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_each_other_and_targets_are_next_characters() {
        let c = Corpus::new("abcdefghijklmnopqrstuvwxyz").unwrap();
        let s = Streams::new(c.ids(), 2, 4).unwrap();
        // Streams of 13: "abcdefghijklm" and "nopqrstuvwxyz"; (13 - 1) / 4 = 3 windows.
        assert_eq!(s.windows(), 3);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        s.window(1, &mut x, &mut y);
        // Step t = 0, row 1 reads "r" (stream 2 starts at "n", window 1 at offset 4).
        assert_eq!(x[..4], [4, 17, 5, 18]); // e r f s
        assert_eq!(x.len(), 8);
        assert_eq!(y[..4], [5, 18, 6, 19]); // f s g t: next characters of e r f s
        assert!(Corpus::new("aaaa").is_err());
        assert!(encode(c.vocab(), "A").is_err());
    }
}
