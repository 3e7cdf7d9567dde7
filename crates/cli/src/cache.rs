//! `nodeimg cache`: what the cache directory holds, and pruning it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};
use nodeimg_fetch::cachedir::{self, Rule};
use nodeimg_fetch::progress::human_size;

/// `nodeimg cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Prune instead of showing.
    #[command(subcommand)]
    pub action: Option<CacheAction>,
    /// The cache directory [default: $XDG_CACHE_HOME/nodeimg, else
    /// ~/.cache/nodeimg].
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// What `nodeimg cache` does besides showing.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Remove what was not used for a while, then the least recently used
    /// until the cache fits a size. Every entry is made again when a build
    /// needs it; nothing outside the cache's own folders is touched.
    #[command(after_help = "\
Examples:
  nodeimg cache prune --older-than 30d
  nodeimg cache prune --max-size 20G
  nodeimg cache prune --older-than 7d --max-size 5G --cache-dir /var/cache/nodeimg

Exit codes: 0 pruned, 1 failure, 2 usage error.")]
    Prune(PruneArgs),
}

/// `nodeimg cache prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove files not used for longer than AGE: a number with s, m, h,
    /// d or w (seconds, minutes, hours, days, weeks), e.g. 30d.
    #[arg(long, value_name = "AGE", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Then remove the least recently used files until the cache holds at
    /// most SIZE: a number of bytes with K, M, G or T (powers of 1024),
    /// e.g. 20G.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
}

/// `30d`, `12h`, `90m`, `2w`, `45s`.
fn parse_age(s: &str) -> Result<Duration, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not an age: write a number and a unit, e.g. 30d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h, d or w, e.g. 30d")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// `20G`, `512M`, `1T`, `4096` (bytes).
fn parse_size(s: &str) -> Result<u64, String> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size: write a number and K, M, G or T, e.g. 20G"))?;
    let shift = match unit {
        "" | "B" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: the unit must be K, M, G or T, e.g. 20G")),
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

fn cache_dir(a: &CacheArgs) -> anyhow::Result<PathBuf> {
    a.cache_dir
        .clone()
        .or_else(nodeimg_fetch::default_cache_dir)
        .ok_or_else(|| {
            nodeimg::Error::Usage(
                "no cache directory: give --cache-dir, or set XDG_CACHE_HOME or HOME".into(),
            )
            .into()
        })
}

/// Run `nodeimg cache`.
pub fn run_cache(a: CacheArgs) -> anyhow::Result<ExitCode> {
    let dir = cache_dir(&a)?;
    let mut out = std::io::stdout().lock();
    match &a.action {
        None => {
            let u = cachedir::usage(&dir)
                .map_err(|e| anyhow::anyhow!("reading the cache {}: {e}", dir.display()))?;
            if a.json {
                let mut v = serde_json::to_value(&u)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert(
                        "layer_cache_format".to_string(),
                        nodeimg_image::cache::FORMAT.into(),
                    );
                }
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            writeln!(
                out,
                "{}: {} in {} file(s)",
                dir.display(),
                human_size(u.bytes),
                u.files
            )?;
            for p in &u.parts {
                writeln!(
                    out,
                    "  {:<10} {:>10} {:>7} file(s)  {}",
                    format!("{}/", p.name),
                    human_size(p.bytes),
                    p.files,
                    p.holds
                )?;
            }
        }
        Some(CacheAction::Prune(p)) => {
            let rule = Rule {
                older_than: p.older_than,
                max_bytes: p.max_size,
            };
            let r = cachedir::prune(&dir, rule, SystemTime::now())
                .map_err(|e| anyhow::anyhow!("pruning the cache {}: {e}", dir.display()))?;
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                writeln!(
                    out,
                    "removed {} file(s), {}; {} left in {}",
                    r.removed_files,
                    human_size(r.removed_bytes),
                    human_size(r.left_bytes),
                    dir.display()
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("2w").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse_age("90m").unwrap(), Duration::from_secs(5400));
        assert!(parse_age("30").unwrap_err().contains("unit"));
        assert!(parse_age("d").unwrap_err().contains("not an age"));
        assert!(parse_age("99999999999999999999w").is_err());
        assert_eq!(parse_size("20G").unwrap(), 20 << 30);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("1.5G").unwrap_err().contains("unit"));
        assert!(parse_size("99999999999T")
            .unwrap_err()
            .contains("too large"));
    }
}
