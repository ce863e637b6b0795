//! Fault injection: `--faults 5xx=0.2,429=0.1,op-fail=0.1,drop=0.05,latency=20ms,seed=7`.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// What to inject, as probabilities per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    /// Answer 500/502/503 before doing anything.
    pub server_error: f64,
    /// Answer 429 (with `Retry-After`) before doing anything.
    pub rate_limit: f64,
    /// Mutations whose operation ends in `failure` (and changes nothing).
    pub operation_failure: f64,
    /// Do the work, then cut the connection instead of answering.
    pub drop: f64,
    /// Added to every answer.
    pub latency: Duration,
    pub seed: Option<u64>,
}

impl FaultSpec {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut f = FaultSpec::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("fault {part:?}: expected NAME=VALUE"))?;
            let prob = || -> Result<f64, String> {
                let p: f64 = v
                    .parse()
                    .map_err(|_| format!("fault {k}: {v:?} is not a number"))?;
                if (0.0..=1.0).contains(&p) {
                    Ok(p)
                } else {
                    Err(format!(
                        "fault {k}: {p} is not a probability between 0 and 1"
                    ))
                }
            };
            match k {
                "5xx" => f.server_error = prob()?,
                "429" => f.rate_limit = prob()?,
                "op-fail" => f.operation_failure = prob()?,
                "drop" => f.drop = prob()?,
                "latency" => {
                    let ms = v.strip_suffix("ms").unwrap_or(v);
                    f.latency =
                        Duration::from_millis(ms.parse().map_err(|_| {
                            format!("fault latency: {v:?} is not a duration in ms")
                        })?);
                }
                "seed" => {
                    f.seed = Some(
                        v.parse()
                            .map_err(|_| format!("fault seed: {v:?} is not a number"))?,
                    )
                }
                _ => {
                    return Err(format!(
                        "unknown fault {k:?}: expected 5xx, 429, op-fail, drop, latency or seed"
                    ));
                }
            }
        }
        Ok(f)
    }

    pub fn rng(&self) -> StdRng {
        match self.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_rng(&mut rand::rng()),
        }
    }
}

/// Rolls a probability.
pub fn roll(rng: &mut StdRng, p: f64) -> bool {
    p > 0.0 && rng.random::<f64>() < p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let f = FaultSpec::parse("5xx=0.2, 429=0.1,op-fail=0.1,drop=0.05,latency=20ms,seed=7");
        let f = f.unwrap_or_default();
        assert_eq!(f.server_error, 0.2);
        assert_eq!(f.latency, Duration::from_millis(20));
        assert_eq!(f.seed, Some(7));
        assert!(FaultSpec::parse("5xx=2").is_err());
        assert!(
            FaultSpec::parse("oops=1")
                .unwrap_err()
                .contains("unknown fault")
        );
    }
}
