//! The fuzz loop: pick or make an input, run it under `catch_unwind` with
//! the allocator's high-water mark reset, check the bound, keep figures.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::targets::{self, Target};
use crate::{alloc, corpus, generate, mutate};

/// The most bytes one input may make a decoder hold at once.
pub fn allocation_bound(input_len: usize) -> usize {
    64 * input_len + 64 * 1024
}

/// How a run goes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Inputs to run.
    pub inputs: u64,
    /// Seed of the run (the same seed makes the same inputs).
    pub seed: u64,
    /// Longest input.
    pub max_len: usize,
    /// Where a failing input is written.
    pub failures: PathBuf,
    /// Print progress every this many inputs (0: never).
    pub progress: u64,
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The target panicked (a crash or a broken invariant).
    Panic {
        /// The panic message.
        message: String,
    },
    /// The input made the target hold more than [`allocation_bound`].
    Allocation {
        /// Bytes held at the peak.
        peak: usize,
        /// The bound for this input.
        bound: usize,
    },
}

/// The figures of one target's run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: Target,
    /// Inputs run.
    pub inputs: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// The most bytes any one input made the target hold at once.
    pub max_peak: usize,
    /// Length of that input.
    pub max_peak_len: usize,
    /// The highest peak relative to its input's bound (1.0 = at the bound).
    pub max_bound_ratio: f64,
    /// The longest input run.
    pub longest: usize,
    /// The first failure, with the file holding its input.
    pub failure: Option<(Failure, PathBuf)>,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

static PANIC_MESSAGE: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the panic hook with one that records the message instead of
/// printing it (the runner reports it with the input).
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut m) = PANIC_MESSAGE.lock() {
            *m = Some(info.to_string());
        }
    }));
}

/// Runs one input; the peak bytes it held, or the failure.
pub fn run_one(
    target: Target,
    engine: &herald::AuthEngine,
    input: &[u8],
) -> Result<usize, Failure> {
    check(input.len(), || match target {
        Target::Inbound => targets::inbound(input),
        Target::Envelope => targets::envelope(input),
        Target::Jwt => targets::jwt(engine, input),
    })
}

/// Runs `f` for an input of `input_len` bytes under `catch_unwind` and the
/// allocation bound: the peak bytes it held, or the failure.
pub fn check(input_len: usize, f: impl FnOnce()) -> Result<usize, Failure> {
    let base = alloc::reset_peak();
    let outcome = catch_unwind(AssertUnwindSafe(f));
    let peak = alloc::peak().saturating_sub(base);
    if outcome.is_err() {
        let message = PANIC_MESSAGE
            .lock()
            .ok()
            .and_then(|mut m| m.take())
            .unwrap_or_else(|| "panic".to_owned());
        return Err(Failure::Panic { message });
    }
    let bound = allocation_bound(input_len);
    if peak > bound {
        return Err(Failure::Allocation { peak, bound });
    }
    Ok(peak)
}

fn generate(target: Target, rng: &mut SmallRng) -> Vec<u8> {
    match target {
        Target::Inbound => generate::message(rng),
        Target::Envelope => generate::envelope(rng),
        Target::Jwt => generate::token(rng, targets::SECRET),
    }
}

fn save(dir: &Path, target: Target, n: u64, input: &[u8]) -> PathBuf {
    let path = dir.join(format!("{}-{n}.bin", target.name()));
    if std::fs::create_dir_all(dir).is_ok() && std::fs::write(&path, input).is_ok() {
        path
    } else {
        PathBuf::from("(could not be saved)")
    }
}

/// Fuzzes `target` with `options.inputs` inputs; stops at the first failure.
pub fn run(target: Target, options: &Options) -> Report {
    let mut rng = SmallRng::seed_from_u64(options.seed ^ (target as u64) << 56);
    let engine = targets::engine();
    let mut pool: Vec<Vec<u8>> = corpus::seeds(target);
    const POOL: usize = 1024;
    let mut report = Report {
        target,
        inputs: 0,
        elapsed: Duration::ZERO,
        max_peak: 0,
        max_peak_len: 0,
        max_bound_ratio: 0.0,
        longest: 0,
        failure: None,
    };
    let start = Instant::now();
    for n in 0..options.inputs {
        let input = if rng.random_bool(0.3) || pool.is_empty() {
            let fresh = generate(target, &mut rng);
            if pool.len() < POOL {
                pool.push(fresh.clone());
            } else if rng.random_ratio(1, 16) {
                let i = rng.random_range(0..POOL);
                pool[i] = fresh.clone();
            }
            fresh
        } else {
            let a = &pool[rng.random_range(0..pool.len())];
            let b = &pool[rng.random_range(0..pool.len())];
            mutate::mutate(&mut rng, a, b, options.max_len)
        };
        let mut input = input;
        input.truncate(options.max_len);
        report.inputs = n + 1;
        report.longest = report.longest.max(input.len());
        match run_one(target, &engine, &input) {
            Ok(peak) => {
                if peak > report.max_peak {
                    report.max_peak = peak;
                    report.max_peak_len = input.len();
                }
                let ratio = peak as f64 / allocation_bound(input.len()) as f64;
                if ratio > report.max_bound_ratio {
                    report.max_bound_ratio = ratio;
                }
            }
            Err(f) => {
                let path = save(&options.failures, target, n, &input);
                report.failure = Some((f, path));
                break;
            }
        }
        if options.progress > 0 && (n + 1) % options.progress == 0 {
            eprintln!(
                "{}: {} inputs, {:.0}/s, max peak {} B",
                target.name(),
                n + 1,
                (n + 1) as f64 / start.elapsed().as_secs_f64(),
                report.max_peak
            );
        }
    }
    report.elapsed = start.elapsed();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(inputs: u64) -> Options {
        Options {
            inputs,
            seed: 1,
            max_len: 4096,
            failures: std::env::temp_dir().join("herald-fuzz-unit"),
            progress: 0,
        }
    }

    #[test]
    fn short_runs_of_every_target_pass() {
        quiet_panics();
        for target in Target::ALL {
            let r = run(target, &options(2000));
            assert!(r.failure.is_none(), "{target:?}: {:?}", r.failure);
            assert_eq!(r.inputs, 2000);
            assert!(r.max_peak > 0, "{target:?} allocated nothing?");
        }
    }

    #[test]
    fn a_panic_and_an_allocation_over_the_bound_are_failures() {
        quiet_panics();
        let engine = targets::engine();
        assert!(run_one(Target::Inbound, &engine, br#"{"event":"e","cid":1}"#).is_ok());
        match check(4, || panic!("boom")) {
            Err(Failure::Panic { message }) => assert!(message.contains("boom"), "{message}"),
            other => panic!("{other:?}"),
        }
        // 1 MiB held at once for a 10-byte input: over 640 B + 64 KiB.
        match check(10, || {
            let v = std::hint::black_box(vec![1u8; 1 << 20]);
            drop(v);
        }) {
            Err(Failure::Allocation { peak, bound }) => {
                assert!(peak >= 1 << 20, "{peak}");
                assert_eq!(bound, allocation_bound(10));
            }
            other => panic!("{other:?}"),
        }
        // Allocations freed before the input, or kept from before it, do
        // not count against it.
        let kept = vec![0u8; 1 << 20];
        assert!(check(10, || drop(std::hint::black_box(vec![0u8; 1000]))).is_ok());
        drop(kept);
        assert_eq!(allocation_bound(0), 64 * 1024);
    }
}
