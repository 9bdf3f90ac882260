//! A stand-in for restic, for the tests of agents on platforms with no restic here (Windows,
//! under wine). It answers the commands a backup job runs — `version`, `cat config`, `init`,
//! `backup --json`, `snapshots --json`, `stats --json`, `unlock` — in restic 0.18's formats (see
//! `agent/tests/fixtures/restic`), with a "repository" that is a directory holding `config`,
//! one JSON line per snapshot in `snapshots.jsonl`, and every call's arguments in `calls.log`.
//! Backups walk the given paths for real, so counts and sizes are those of the files.
//!
//! `restic-standin hook FILE ARGS...` is a hook instead: it writes its arguments, one per line,
//! and the `HOLDFAST_*` variables it was given to FILE.
//!
//! Like restic it reads the repository from `RESTIC_REPOSITORY` and the password from the file
//! in `RESTIC_PASSWORD_FILE`, and refuses to work without one.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("version") => {
            println!(
                "restic 0.18.0 compiled with go1.24.1 on {}/{} (holdfast stand-in)",
                std::env::consts::OS,
                std::env::consts::ARCH
            );
            ExitCode::SUCCESS
        }
        Some("hook") => hook(&args[1..]),
        Some(_) => match repository(&args) {
            Ok(code) => ExitCode::from(code),
            Err((code, message)) => {
                eprintln!("{message}");
                ExitCode::from(code)
            }
        },
        None => fatal(1, "usage: restic-standin COMMAND"),
    }
}

fn fatal(code: u8, message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(code)
}

fn hook(args: &[String]) -> ExitCode {
    let Some((file, rest)) = args.split_first() else {
        return fatal(1, "usage: restic-standin hook FILE ARGS...");
    };
    let mut text: String = rest.iter().map(|a| format!("{a}\n")).collect();
    for var in [
        "HOLDFAST_JOB_ID",
        "HOLDFAST_SCHEDULE",
        "HOLDFAST_JOB_STATUS",
    ] {
        if let Ok(value) = std::env::var(var) {
            text.push_str(&format!("{var}={value}\n"));
        }
    }
    let written = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => {
            println!("hook ran with {} arguments", rest.len());
            ExitCode::SUCCESS
        }
        Err(e) => fatal(1, &format!("cannot write {file}: {e}")),
    }
}

type Failure = (u8, String);

fn repository(args: &[String]) -> Result<u8, Failure> {
    let repo = PathBuf::from(std::env::var_os("RESTIC_REPOSITORY").ok_or((
        1,
        "Fatal: Please specify repository location (-r)".to_string(),
    ))?);
    let password_file = std::env::var_os("RESTIC_PASSWORD_FILE")
        .ok_or((1, "Fatal: no password file given".to_string()))?;
    match fs::read_to_string(&password_file) {
        Ok(p) if !p.trim().is_empty() => {}
        _ => return Err((12, "Fatal: wrong password or no key found".to_string())),
    }
    let config = repo.join("config");
    if repo.is_dir() {
        let mut log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(repo.join("calls.log"))
            .map_err(|e| (1, format!("Fatal: calls.log: {e}")))?;
        let _ = writeln!(log, "{}", args.join("\t"));
    }
    let command: Vec<&str> = args.iter().map(String::as_str).collect();
    let exists = config.exists();
    match command.as_slice() {
        ["cat", "config", ..] if exists => {
            print!("{}", fs::read_to_string(&config).unwrap_or_default());
            Ok(0)
        }
        ["cat", "config", ..] | ["backup", ..] | ["snapshots", ..] | ["stats", ..] if !exists => {
            Err((
                10,
                format!(
                    "Fatal: repository does not exist: unable to open config file: {}",
                    config.display()
                ),
            ))
        }
        ["init", ..] if exists => Err((
            1,
            "Fatal: create key in repository: config file already exists".into(),
        )),
        ["init", ..] => {
            fs::create_dir_all(&repo).map_err(|e| (1, format!("Fatal: create repository: {e}")))?;
            let id = hex_id(&repo.display().to_string());
            fs::write(&config, format!("{{\"version\":2,\"id\":\"{id}\"}}\n"))
                .map_err(|e| (1, format!("Fatal: write config: {e}")))?;
            println!(
                "created restic repository {} at {}",
                &id[..10],
                repo.display()
            );
            Ok(0)
        }
        ["unlock", ..] => Ok(0),
        ["backup", rest @ ..] => backup(&repo, rest),
        ["snapshots", rest @ ..] => {
            let host = flag_values(rest, "--host").into_iter().next();
            let list: Vec<String> = snapshots(&repo)
                .into_iter()
                .filter(|s| host.is_none_or(|h| s.contains(&format!("\"hostname\":{}", json(h)))))
                .collect();
            println!("[{}]", list.join(","));
            Ok(0)
        }
        ["stats", ..] => {
            let list = snapshots(&repo);
            let size: u64 = list
                .iter()
                .filter_map(|s| {
                    let at = s.find("\"total_bytes_processed\":")? + 24;
                    s[at..].split([',', '}']).next()?.parse::<u64>().ok()
                })
                .sum();
            println!(
                "{{\"total_size\":{size},\"total_uncompressed_size\":{size},\"compression_ratio\":1,\"total_blob_count\":{},\"snapshots_count\":{}}}",
                list.len(),
                list.len()
            );
            Ok(0)
        }
        _ => Err((1, format!("restic stand-in: unsupported command {args:?}"))),
    }
}

/// The values of every `flag VALUE` before `--`.
fn flag_values<'a>(args: &[&'a str], flag: &str) -> Vec<&'a str> {
    let options = args.split(|a| *a == "--").next().unwrap_or_default();
    options
        .windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1])
        .collect()
}

fn backup(repo: &Path, args: &[&str]) -> Result<u8, Failure> {
    let paths: Vec<&str> = match args.iter().position(|a| *a == "--") {
        Some(i) => args[i + 1..].to_vec(),
        None => {
            return Err((
                1,
                "Fatal: nothing to backup, please specify source files/dirs".into(),
            ));
        }
    };
    let host = flag_values(args, "--host")
        .first()
        .copied()
        .unwrap_or("unknown");
    let tags = flag_values(args, "--tag");
    let (mut files, mut bytes, mut dirs, mut errors) = (0u64, 0u64, 0u64, 0u64);
    for path in &paths {
        if let Err(e) = walk(Path::new(path), &mut files, &mut bytes, &mut dirs) {
            errors += 1;
            eprintln!(
                "{{\"message_type\":\"error\",\"error\":{{\"message\":{}}},\"during\":\"scan\",\"item\":{}}}",
                json(&format!("lstat {path}: {e}")),
                json(path)
            );
        }
    }
    println!(
        "{{\"message_type\":\"status\",\"seconds_elapsed\":1,\"percent_done\":1,\"total_files\":{files},\"files_done\":{files},\"total_bytes\":{bytes},\"bytes_done\":{bytes},\"error_count\":{errors}}}"
    );
    let now = rfc3339(SystemTime::now());
    let id = hex_id(&format!("{now}{host}{paths:?}"));
    let snapshot = format!(
        "{{\"time\":{},\"paths\":[{}],\"hostname\":{},\"tags\":[{}],\"program_version\":\"restic 0.18.0\",\"summary\":{{\"total_files_processed\":{files},\"total_bytes_processed\":{bytes}}},\"id\":\"{id}\",\"short_id\":\"{}\"}}",
        json(&now),
        paths.iter().map(|p| json(p)).collect::<Vec<_>>().join(","),
        json(host),
        tags.iter().map(|t| json(t)).collect::<Vec<_>>().join(","),
        &id[..8]
    );
    let mut list = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(repo.join("snapshots.jsonl"))
        .map_err(|e| (1, format!("Fatal: save snapshot: {e}")))?;
    writeln!(list, "{snapshot}").map_err(|e| (1, format!("Fatal: save snapshot: {e}")))?;
    println!(
        "{{\"message_type\":\"summary\",\"files_new\":{files},\"files_changed\":0,\"files_unmodified\":0,\"dirs_new\":{dirs},\"dirs_changed\":0,\"dirs_unmodified\":0,\"data_blobs\":{files},\"tree_blobs\":{dirs},\"data_added\":{bytes},\"data_added_packed\":{bytes},\"total_files_processed\":{files},\"total_bytes_processed\":{bytes},\"total_duration\":0.5,\"backup_start\":{},\"backup_end\":{},\"snapshot_id\":\"{id}\"}}",
        json(&now),
        json(&now)
    );
    Ok(if errors > 0 { 3 } else { 0 })
}

fn walk(path: &Path, files: &mut u64, bytes: &mut u64, dirs: &mut u64) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        *dirs += 1;
        for entry in fs::read_dir(path)? {
            walk(&entry?.path(), files, bytes, dirs)?;
        }
    } else {
        *files += 1;
        *bytes += meta.len();
    }
    Ok(())
}

fn snapshots(repo: &Path) -> Vec<String> {
    fs::read_to_string(repo.join("snapshots.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// 64 hex characters, different for every call.
fn hex_id(seed: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (0..4u8)
        .map(|round| {
            let mut h = DefaultHasher::new();
            (seed, nanos, std::process::id(), round).hash(&mut h);
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn json(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// UTC time as restic writes it.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}
