//! The Bayesian classifier: Robinson's token probabilities combined with
//! Fisher's chi-square method, as SpamBayes' `chi2_spamprob` does
//! (Gary Robinson, "A Statistical Approach to the Spam Problem", Linux
//! Journal 2003; SpamBayes `classifier.py`).
//!
//! The model (message and token counts) is persistent per server in
//! `<data_dir>/spam/bayes.json`, written atomically (temporary file, fsync,
//! rename, fsync of the folder). A server notices when another process
//! (`labctl spam train`) replaced the file and reloads it before the next
//! message. Without a file the model is the initial one trained from the
//! corpus shipped in the binary.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::analyze::Analysis;
use super::corpus;
use super::tokenize::tokens;

/// Robinson's strength of the background belief (SpamBayes `unknown_word_strength`).
const UNKNOWN_STRENGTH: f64 = 0.45;
/// Robinson's background probability (SpamBayes `unknown_word_prob`).
const UNKNOWN_PROB: f64 = 0.5;
/// Tokens this close to 0.5 are no evidence (SpamBayes `minimum_prob_strength`).
const MIN_STRENGTH: f64 = 0.1;
/// Most tokens combined (SpamBayes `max_discriminators`).
const MAX_CLUES: usize = 150;
/// Messages of each class needed before the classifier says anything.
const MIN_TRAINED: u32 = 5;
/// Model file format version.
const VERSION: u32 = 1;

/// The model file under the data folder.
pub fn model_path(data_dir: &Path) -> PathBuf {
    data_dir.join("spam").join("bayes.json")
}

/// Message and token counts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Model {
    /// File format version.
    pub version: u32,
    /// Spam messages trained.
    pub nspam: u32,
    /// Ham messages trained.
    pub nham: u32,
    /// Token -> [spam count, ham count].
    pub tokens: HashMap<String, [u32; 2]>,
}

impl Model {
    /// The initial model: the shipped corpus.
    pub fn initial() -> Self {
        let mut model = Model {
            version: VERSION,
            ..Default::default()
        };
        for (_, message) in corpus::SPAM {
            model.learn(&Analysis::of(message), true);
        }
        for (_, message) in corpus::HAM {
            model.learn(&Analysis::of(message), false);
        }
        model
    }

    /// Adds one message.
    pub fn learn(&mut self, analysis: &Analysis, spam: bool) {
        let slot = usize::from(!spam);
        if spam {
            self.nspam += 1;
        } else {
            self.nham += 1;
        }
        for token in tokens(analysis) {
            match self.tokens.get_mut(token.as_ref()) {
                Some(counts) => counts[slot] += 1,
                None => self.tokens.entry(token.into_owned()).or_default()[slot] += 1,
            }
        }
    }

    /// Robinson's f(w) for one token (SpamBayes `probability`).
    fn token_prob(&self, counts: [u32; 2]) -> f64 {
        let [s, h] = counts;
        let spam_ratio = f64::from(s) / f64::from(self.nspam.max(1));
        let ham_ratio = f64::from(h) / f64::from(self.nham.max(1));
        let prob = if spam_ratio + ham_ratio == 0.0 {
            UNKNOWN_PROB
        } else {
            spam_ratio / (spam_ratio + ham_ratio)
        };
        let n = f64::from(s + h);
        (UNKNOWN_STRENGTH * UNKNOWN_PROB + n * prob) / (UNKNOWN_STRENGTH + n)
    }

    /// The spam probability in [0, 1], or `None` while the model knows too
    /// few messages of either class.
    pub fn classify(&self, analysis: &Analysis) -> Option<f64> {
        if self.nspam < MIN_TRAINED || self.nham < MIN_TRAINED {
            return None;
        }
        let mut clues: Vec<f64> = tokens(analysis)
            .iter()
            .filter_map(|t| self.tokens.get(t.as_ref()))
            .map(|c| self.token_prob(*c))
            .filter(|p| (p - 0.5).abs() >= MIN_STRENGTH)
            .collect();
        clues.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
        clues.truncate(MAX_CLUES);
        Some(chi2_combine(&clues))
    }
}

/// Fisher's combining of token probabilities (SpamBayes `chi2_spamprob`):
/// S = 1 - C⁻¹(-2 Σ ln(1-p), 2n), H = 1 - C⁻¹(-2 Σ ln p, 2n), (S - H + 1) / 2.
pub fn chi2_combine(probs: &[f64]) -> f64 {
    if probs.is_empty() {
        return 0.5;
    }
    // Sums of logs instead of SpamBayes' frexp products: same value, no underflow.
    let ln_ham: f64 = probs.iter().map(|p| p.ln()).sum();
    let ln_spam: f64 = probs.iter().map(|p| (1.0 - p).ln()).sum();
    let dof = 2 * probs.len();
    let s = 1.0 - chi2q(-2.0 * ln_spam, dof);
    let h = 1.0 - chi2q(-2.0 * ln_ham, dof);
    (s - h + 1.0) / 2.0
}

/// Survival function of the chi-square distribution with an even number of
/// degrees of freedom: P(χ² ≥ x2).
pub fn chi2q(x2: f64, dof: usize) -> f64 {
    debug_assert!(dof.is_multiple_of(2));
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..dof / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

/// A model shared by the connections of a server, backed by a file.
#[derive(Debug)]
pub struct Classifier {
    path: Option<PathBuf>,
    state: RwLock<State>,
}

#[derive(Debug)]
struct State {
    model: Model,
    /// Modification time and length of the file the model came from.
    stamp: Option<(SystemTime, u64)>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Errors of the model file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing failed.
    #[error("spam model {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a model.
    #[error("spam model {path}: {message}; delete the file to start again from the shipped model")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Classifier {
    /// A classifier persisted at `path` (loaded now if the file exists,
    /// otherwise the initial model), or in memory only with `None`.
    pub fn open(path: Option<PathBuf>) -> Result<Self, ModelError> {
        let (model, stamp) = match &path {
            Some(p) if p.exists() => (load(p)?, stamp(p)),
            _ => (Model::initial(), None),
        };
        Ok(Self {
            path,
            state: RwLock::new(State { model, stamp }),
        })
    }

    /// Reloads the model when the file changed since it was read.
    fn refresh(&self) -> Result<(), ModelError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let now = stamp(path);
        if now.is_none() || now == self.state.read().expect("model lock").stamp {
            return Ok(());
        }
        let model = load(path)?;
        let mut state = self.state.write().expect("model lock");
        state.model = model;
        state.stamp = now;
        Ok(())
    }

    /// The spam probability of a message (`None`: model too small).
    pub fn classify(&self, analysis: &Analysis) -> Result<Option<f64>, ModelError> {
        self.refresh()?;
        Ok(self
            .state
            .read()
            .expect("model lock")
            .model
            .classify(analysis))
    }

    /// Trains one message and saves the model.
    pub fn train(&self, message: &[u8], spam: bool) -> Result<(), ModelError> {
        self.train_many(&[message], spam)
    }

    /// Trains messages and saves the model once.
    pub fn train_many(&self, messages: &[&[u8]], spam: bool) -> Result<(), ModelError> {
        self.refresh()?;
        let mut state = self.state.write().expect("model lock");
        for message in messages {
            state.model.learn(&Analysis::of(message), spam);
        }
        if let Some(path) = &self.path {
            save(path, &state.model)?;
            state.stamp = stamp(path);
        }
        Ok(())
    }

    /// Learns one message in memory only (see [`Classifier::persist`]).
    pub fn learn(&self, message: &[u8], spam: bool) -> Result<(), ModelError> {
        self.refresh()?;
        let analysis = Analysis::of(message);
        self.state
            .write()
            .expect("model lock")
            .model
            .learn(&analysis, spam);
        Ok(())
    }

    /// Writes the model to its file (atomically), if it has one.
    pub fn persist(&self) -> Result<(), ModelError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let body = {
            let state = self.state.read().expect("model lock");
            serde_json::to_vec(&state.model).expect("model serializes")
        };
        save_bytes(path, &body)?;
        self.state.write().expect("model lock").stamp = stamp(path);
        Ok(())
    }

    /// (spam, ham) messages trained.
    pub fn counts(&self) -> (u32, u32) {
        let state = self.state.read().expect("model lock");
        (state.model.nspam, state.model.nham)
    }
}

fn load(path: &Path) -> Result<Model, ModelError> {
    let text = std::fs::read(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let model: Model = serde_json::from_slice(&text).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if model.version != VERSION {
        return Err(ModelError::Format {
            path: path.to_path_buf(),
            message: format!("version {} (expected {VERSION})", model.version),
        });
    }
    Ok(model)
}

/// Writes the model atomically: temporary file, fsync, rename, fsync folder.
fn save(path: &Path, model: &Model) -> Result<(), ModelError> {
    let body = serde_json::to_vec(model).expect("model serializes");
    save_bytes(path, &body)
}

/// Writes a serialized model atomically.
fn save_bytes(path: &Path, body: &[u8]) -> Result<(), ModelError> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".bayes.json.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(body).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2q_known_values() {
        // P(χ²₂ ≥ x) = e^(-x/2).
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        // χ²₄: e^(-m)(1+m), m = x/2.
        assert!((chi2q(4.0, 4) - (-2.0f64).exp() * 3.0).abs() < 1e-12);
        assert_eq!(chi2q(0.0, 10), 1.0);
    }

    #[test]
    fn chi2_combining_is_symmetric_and_decisive() {
        assert_eq!(chi2_combine(&[]), 0.5);
        let spammy = chi2_combine(&[0.99; 20]);
        let hammy = chi2_combine(&[0.01; 20]);
        assert!(spammy > 0.99 && hammy < 0.01, "{spammy} {hammy}");
        assert!((spammy + hammy - 1.0).abs() < 1e-9);
        // Mixed strong evidence is uncertain.
        let mixed = chi2_combine(&[0.99, 0.99, 0.01, 0.01]);
        assert!((mixed - 0.5).abs() < 0.05, "{mixed}");
    }

    #[test]
    fn token_probability_follows_robinson() {
        let model = Model {
            version: VERSION,
            nspam: 10,
            nham: 10,
            tokens: HashMap::new(),
        };
        // Unknown token: 0.5; seen once in spam only: (0.45*0.5 + 1)/(1.45).
        assert_eq!(model.token_prob([0, 0]), 0.5);
        assert!((model.token_prob([1, 0]) - (0.225 + 1.0) / 1.45).abs() < 1e-12);
        assert!(model.token_prob([0, 9]) < 0.1);
    }

    #[test]
    fn initial_model_separates_its_own_corpus_languages() {
        let model = Model::initial();
        assert!(model.nspam >= 15 && model.nham >= 15);
        let spam = Analysis::of(
            "Subject: Виграш! Отримайте приз\r\n\r\nВи виграли iPhone! Перейдіть за посиланням та підтвердіть дані картки. Терміново!"
                .as_bytes(),
        );
        let ham = Analysis::of(
            "Subject: Лабораторна робота\r\n\r\nПривіт, надсилаю звіт з лабораторної роботи про DNS. Подивись, будь ласка, до п'ятниці."
                .as_bytes(),
        );
        let (s, h) = (
            model.classify(&spam).unwrap(),
            model.classify(&ham).unwrap(),
        );
        assert!(s > 0.9 && h < 0.1, "spam {s} ham {h}");
    }

    #[test]
    fn training_persists_and_is_reloaded() {
        let dir = std::env::temp_dir().join(format!("maillab-bayes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = model_path(&dir);
        let a = Classifier::open(Some(path.clone())).unwrap();
        let b = Classifier::open(Some(path.clone())).unwrap();
        let (s0, h0) = a.counts();
        a.train(
            b"Subject: zork quux\r\n\r\nzorkblatt quuxifier frobnicate",
            true,
        )
        .unwrap();
        assert!(path.exists());
        assert_eq!(a.counts(), (s0 + 1, h0));
        // Another process's classifier picks the change up.
        let probe = Analysis::of(b"Subject: hi\r\n\r\nzorkblatt quuxifier frobnicate");
        b.classify(&probe).unwrap();
        assert_eq!(b.counts(), (s0 + 1, h0));
        // And a fresh one loads it.
        let c = Classifier::open(Some(path.clone())).unwrap();
        assert_eq!(c.counts(), (s0 + 1, h0));
        std::fs::write(&path, b"not json").unwrap();
        assert!(Classifier::open(Some(path)).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
