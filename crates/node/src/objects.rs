//! `cairn put/get/ls/rm/mb`: object commands over S3 (SigV4), with progress bars for large
//! transfers. Credentials come from the usual `AWS_*` variables or a devnet's `s3.env`.

use crate::s3client::{Body, S3Client};
use indicatif::{ProgressBar, ProgressStyle};
use std::{io::Write, path::Path, time::Instant};

/// Transfers at least this large show a progress bar.
pub const PROGRESS_MIN_BYTES: u64 = 8 * 1024 * 1024;

/// Splits `s3://bucket/key` into (bucket, key); the key may be empty.
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or_else(|| format!("{url:?} is not an s3://bucket/key URL"))?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(format!("{url:?} names no bucket"));
    }
    Ok((bucket.to_string(), key.to_string()))
}

fn bar(total: u64) -> Option<ProgressBar> {
    if total < PROGRESS_MIN_BYTES {
        return None;
    }
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("static template"),
    );
    Some(pb)
}

fn client(env_file: &Path) -> Result<S3Client, String> {
    S3Client::from_env(Some(env_file))
}

/// Uploads `file` to `target`.
pub fn put(file: &Path, target: &str, env_file: &Path) -> Result<(), String> {
    let (bucket, mut key) = parse_url(target)?;
    if key.is_empty() || key.ends_with('/') {
        let name = file
            .file_name()
            .ok_or_else(|| format!("{} has no file name; give the key", file.display()))?;
        key.push_str(&name.to_string_lossy());
    }
    let c = client(env_file)?;
    let mut f =
        std::fs::File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let pb = bar(len);
    let progress = |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    let started = Instant::now();
    let r = c.request(
        "PUT",
        &format!("/{bucket}/{key}"),
        &[],
        &[],
        Body::Reader(&mut f, len, &progress),
        None,
    )?;
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    if r.status != 200 {
        return Err(format!("upload failed: {}", r.error_text()));
    }
    println!(
        "uploaded {} -> s3://{bucket}/{key} ({len} bytes, ETag {}, {:.1} s)",
        file.display(),
        r.header("etag").unwrap_or("?"),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Downloads `source` to `file` (`-` = stdout); a failed download leaves no partial file.
pub fn get(source: &str, file: &Path, env_file: &Path) -> Result<(), String> {
    let (bucket, key) = parse_url(source)?;
    if key.is_empty() {
        return Err("give the object key: s3://bucket/key".into());
    }
    let c = client(env_file)?;
    let path = format!("/{bucket}/{key}");
    let head = c.request("HEAD", &path, &[], &[], Body::Empty, None)?;
    if head.status != 200 {
        return Err(match head.status {
            404 => format!("s3://{bucket}/{key} does not exist"),
            _ => format!("HEAD failed: HTTP {}", head.status),
        });
    }
    let len: u64 = head
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let to_stdout = file == Path::new("-");
    let tmp = file.with_extension("cairn-partial");
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&tmp)
                .map_err(|e| format!("cannot create {}: {e}", tmp.display()))?,
        ))
    };
    let pb = if to_stdout { None } else { bar(len) };
    let progress = |n: u64| {
        if let Some(pb) = &pb {
            pb.set_position(n);
        }
    };
    let result = c.request(
        "GET",
        &path,
        &[],
        &[],
        Body::Empty,
        Some((&mut *out, &progress)),
    );
    if let Some(pb) = &pb {
        pb.finish_and_clear();
    }
    let flushed = out.flush().map_err(|e| e.to_string());
    drop(out);
    let r = match result.and_then(|r| flushed.map(|()| r)) {
        Ok(r) if r.status == 200 => r,
        Ok(r) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("download failed: {}", r.error_text()));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if !to_stdout {
        std::fs::rename(&tmp, file).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        eprintln!(
            "downloaded s3://{bucket}/{key} -> {} ({len} bytes, ETag {})",
            file.display(),
            r.header("etag").unwrap_or("?")
        );
    }
    Ok(())
}

fn tags<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Lists buckets, or every key under s3://bucket/prefix (following continuation tokens).
pub fn ls(target: Option<&str>, env_file: &Path) -> Result<(), String> {
    let c = client(env_file)?;
    let Some(target) = target else {
        let r = c.request("GET", "/", &[], &[], Body::Empty, None)?;
        if r.status != 200 {
            return Err(format!("ListBuckets failed: {}", r.error_text()));
        }
        let xml = String::from_utf8_lossy(&r.body);
        for name in tags(&xml, "Name") {
            println!("s3://{}", unescape(name));
        }
        return Ok(());
    };
    let (bucket, prefix) = parse_url(target)?;
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("list-type", "2"), ("prefix", prefix.as_str())];
        if let Some(t) = &token {
            q.push(("continuation-token", t.as_str()));
        }
        let r = c.request("GET", &format!("/{bucket}"), &q, &[], Body::Empty, None)?;
        if r.status != 200 {
            return Err(format!("ListObjectsV2 failed: {}", r.error_text()));
        }
        let xml = String::from_utf8_lossy(&r.body).to_string();
        for entry in tags(&xml, "Contents") {
            let key = tags(entry, "Key")
                .first()
                .map(|k| unescape(k))
                .unwrap_or_default();
            let size = tags(entry, "Size").first().copied().unwrap_or("?");
            let modified = tags(entry, "LastModified").first().copied().unwrap_or("?");
            println!("{modified:<24} {size:>12}  {key}");
        }
        token = tags(&xml, "NextContinuationToken")
            .first()
            .map(|t| unescape(t));
        if token.is_none() {
            return Ok(());
        }
    }
}

/// Deletes one object.
pub fn rm(target: &str, env_file: &Path) -> Result<(), String> {
    let (bucket, key) = parse_url(target)?;
    if key.is_empty() {
        return Err("give the object key: s3://bucket/key".into());
    }
    let r = client(env_file)?.request(
        "DELETE",
        &format!("/{bucket}/{key}"),
        &[],
        &[],
        Body::Empty,
        None,
    )?;
    if r.status >= 300 {
        return Err(format!("delete failed: {}", r.error_text()));
    }
    println!("deleted s3://{bucket}/{key}");
    Ok(())
}

/// Creates a bucket.
pub fn mb(target: &str, env_file: &Path) -> Result<(), String> {
    let (bucket, _) = parse_url(target)?;
    let r = client(env_file)?.request("PUT", &format!("/{bucket}"), &[], &[], Body::Empty, None)?;
    if r.status >= 300 {
        return Err(format!("create bucket failed: {}", r.error_text()));
    }
    println!("created s3://{bucket}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_key() {
        assert_eq!(parse_url("s3://b/k/x").unwrap(), ("b".into(), "k/x".into()));
        assert_eq!(parse_url("s3://b").unwrap(), ("b".into(), "".into()));
        assert!(parse_url("http://b/k").is_err());
        assert!(parse_url("s3:///k").is_err());
    }

    #[test]
    fn xml_tags_and_escapes() {
        let xml = "<a><Key>x&amp;y</Key></a><a><Key>z</Key></a>";
        assert_eq!(tags(xml, "Key"), vec!["x&amp;y", "z"]);
        assert_eq!(unescape("x&amp;y&lt;"), "x&y<");
    }
}
