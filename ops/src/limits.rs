//! The ranges request numbers must fall in, checked at the request boundary with the field named.

/// The longest `timeout_secs` a request may ask for (exec, a schedule's runs): one day. A
/// longer run is better started as a service; the cap keeps every deadline computable.
pub const MAX_TIMEOUT_SECS: f64 = 86_400.0;
/// The most bytes of stdout and of stderr an exec may keep (`max_output_bytes`): 64 MiB each,
/// the map output cap of `mapreduce`, the largest user (1 GiB of output took a node to 23.5 GB).
/// The whole result is held in memory and sent as one message, so it must stay bounded.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// The longest `ttl_secs` of a mode override or an imperative schedule: 366 days.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

/// Checks a number of seconds a request gives for a timeout: finite, above zero and at most
/// [`MAX_TIMEOUT_SECS`]. The error names `field` and the allowed range.
pub fn timeout_from_secs(field: &str, secs: f64) -> Result<std::time::Duration, String> {
    if !(secs.is_finite() && secs > 0.0 && secs <= MAX_TIMEOUT_SECS) {
        return Err(format!(
            "{field} must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECS} (one \
             day), got {secs}"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{field}: {e}"))
}

/// Checks a `ttl_secs`: at most [`MAX_TTL_SECS`] (366 days).
pub fn ttl_from_secs(field: &str, secs: u64) -> Result<std::time::Duration, String> {
    if secs > MAX_TTL_SECS {
        return Err(format!(
            "{field} must be at most {MAX_TTL_SECS} seconds (366 days), got {secs}"
        ));
    }
    Ok(std::time::Duration::from_secs(secs))
}

/// Checks a number of seconds for a wait that is not a command's timeout (a fan-out's per-host
/// wait or deadline, a CLI duration): finite, not negative, at most [`MAX_TTL_SECS`], so that
/// adding it to the clock can never overflow.
pub fn duration_from_secs(field: &str, secs: f64) -> Result<std::time::Duration, String> {
    if !(secs.is_finite() && secs >= 0.0 && secs <= MAX_TTL_SECS as f64) {
        return Err(format!(
            "{field} must be a number of seconds from 0 to {MAX_TTL_SECS} (366 days), got {secs}"
        ));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{field}: {e}"))
}

/// Checks a `max_output_bytes`: at most [`MAX_OUTPUT_BYTES`].
pub fn max_output_bytes(field: &str, bytes: usize) -> Result<usize, String> {
    if bytes > MAX_OUTPUT_BYTES {
        return Err(format!(
            "{field} must be at most {MAX_OUTPUT_BYTES} (64 MiB), got {bytes}; read large \
             output from a file with read_file instead"
        ));
    }
    Ok(bytes)
}

/// Parses `5s`, `2m`, `1h`, `1h30m`, or a bare number of seconds; at most 366 days (`1e300`
/// panicked, and a longer wait overflows the clock it is added to).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        return duration_from_secs("duration", seconds);
    }
    let parsed = humantime::parse_duration(text)
        .map_err(|e| format!("{e}: expected a duration like 5s, 2m or 1h, got {text:?}"))?;
    duration_from_secs("duration", parsed.as_secs_f64())
}

/// Parses `1048576`, `64K`, `16M`, `1G` (binary units).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => (&text[..at], text[at..].to_ascii_uppercase()),
        None => (text, String::new()),
    };
    let number: usize = number
        .trim()
        .parse()
        .map_err(|_| format!("expected a size like 16M, got {text:?}"))?;
    let factor: usize = match unit.trim_end_matches(['I', 'B']) {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("unknown size unit in {text:?} (use K, M or G)")),
    };
    number
        .checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("size {text:?} is out of range"))
}
