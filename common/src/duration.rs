//! Human-readable durations for settings (`20m`, `4s`, `30d`), as operators type them.

use std::time::Duration;

/// Parses `20m`, `4s`, `30d`, `1h 30m`; a bare number is refused so units are never guessed.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|error| format!("invalid duration '{text}': {error} (examples: 20m, 4s, 30d)"))?;
    if duration.is_zero() {
        return Err(format!("duration '{text}' must be greater than zero"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_units_are_understood() {
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("4s"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
    }

    #[test]
    fn bare_numbers_and_zero_are_refused() {
        assert!(parse_duration("20").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
