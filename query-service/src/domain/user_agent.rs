//! Browser and operating system of a sign-in, read from its User-Agent string.
//!
//! This module owns the turning of a raw User-Agent into the two display values
//! that Graph reports under `deviceDetail`: `browser` and `operatingSystem`.
//! The recognition itself is done by the `woothee` crate, whose rules are
//! compiled into the binary (no data file at run time, no network); this module
//! owns the naming scheme on top of it and the few corrections listed below.
//!
//! # Naming scheme
//!
//! * Browser: `"<Name> <major version>"`, for example `"Chrome 131"`,
//!   `"Edge 131"`, `"Firefox 133"`, `"Safari 18"`, `"Samsung Internet 26"`.
//!   Safari is `"Safari"` on every Apple platform (never `"Mobile Safari"`).
//!   Chrome, Firefox and Edge on iOS (`CriOS`, `FxiOS`, `EdgiOS`) are named
//!   after the browser the user chose, not after the WebKit engine underneath.
//!   A browser token without a numeric version is not trusted and gives `None`.
//! * Operating system: `"Windows 10"`, `"Windows 7"`, ..., `"Windows"` (version
//!   unknown), `"macOS"`, `"iOS 18"`, `"Android 14"`, `"Linux"`, `"ChromeOS"`.
//! * `None` when the string does not identify a browser or an OS. Crawlers,
//!   HTTP libraries (curl, scripts) and unrecognised strings get no browser:
//!   an absent value is better than a bogus one.
//!
//! # Corrections and known limits
//!
//! * Windows 11 sends the same `Windows NT 10.0` token as Windows 10, so both
//!   show as `"Windows 10"`, as in Entra's own sign-in logs.
//! * Every macOS browser freezes its version at 10.15.7, so macOS has no version.
//! * iPadOS is reported as `"iOS"`; an iPad in desktop mode says it is a Mac
//!   and is reported as `"macOS"`.
//! * Chrome's reduced User-Agent always says `Android 10; K`, whatever the real
//!   version, so that exact form is reported as plain `"Android"`.
//! * An embedded web view inside an app (Android WebView, an iOS app's web
//!   view) is reported as `"WebView"` without a version: Android's carries a
//!   fixed `Version/4.0` token that is not its version, iOS's carries none.
//! * Only the first [`MAX_USER_AGENT_BYTES`] bytes are parsed, so a hostile
//!   header cannot make enrichment expensive; the browser and OS tokens of any
//!   real User-Agent come well before that.

use woothee::parser::{Parser, WootheeResult};

/// Browser and operating system as shown in a sign-in's `deviceDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUserAgent {
    pub browser: Option<String>,
    pub operating_system: Option<String>,
}

/// How much of a User-Agent is looked at.
pub const MAX_USER_AGENT_BYTES: usize = 1024;

// woothee's marker for a field it could not determine.
const UNKNOWN: &str = woothee::woothee::VALUE_UNKNOWN;

/// Reads the browser and operating system from a User-Agent string.
pub fn parse(user_agent: &str) -> ParsedUserAgent {
    let user_agent = truncate(user_agent, MAX_USER_AGENT_BYTES).trim();
    if user_agent.is_empty() {
        return ParsedUserAgent {
            browser: None,
            operating_system: None,
        };
    }
    match Parser::new().parse(user_agent) {
        Some(result) => ParsedUserAgent {
            browser: browser(&result),
            operating_system: operating_system(&result, user_agent),
        },
        None => ParsedUserAgent {
            browser: None,
            operating_system: None,
        },
    }
}

fn truncate(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    // Back off to a character boundary so a multi-byte character at the limit
    // is dropped instead of causing a slicing panic.
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

fn browser(result: &WootheeResult<'_>) -> Option<String> {
    // woothee also names crawlers, feed readers and HTTP libraries; only real
    // browsers belong in deviceDetail.browser.
    if result.browser_type != "browser" || result.name == UNKNOWN || result.name.is_empty() {
        return None;
    }
    let name = match result.name {
        "SamsungBrowser" => "Samsung Internet",
        "Webview" => return Some("WebView".to_owned()),
        other => other,
    };
    // Every real browser sends its version; a browser token without a numeric
    // one ("Firefox/abc") is junk or a spoof, not a browser we can name.
    let major = major(result.version)?;
    Some(format!("{name} {major}"))
}

fn operating_system(result: &WootheeResult<'_>, user_agent: &str) -> Option<String> {
    let version = result.os_version.as_ref();
    let name = match result.os {
        "" => return None,
        os if os == UNKNOWN => return None,
        "Windows UNKNOWN Ver" => "Windows",
        "Windows Phone OS" => "Windows Phone",
        "Mac OSX" => "macOS",
        "Mac OS Classic" => "Mac OS",
        "iPhone" | "iPad" | "iPod" | "iOS" => return Some(with_major("iOS", version)),
        "Android" if is_reduced_android(user_agent) => "Android",
        "Android" => return Some(with_major("Android", version)),
        // Already readable: "Windows 10", "Windows 7", "Linux", "ChromeOS", ...
        other => other,
    };
    Some(name.to_owned())
}

// Chrome's User-Agent reduction replaces the real Android version and device
// model with this fixed text.
fn is_reduced_android(user_agent: &str) -> bool {
    user_agent.contains("Android 10; K)")
}

fn with_major(name: &str, version: &str) -> String {
    match major(version) {
        Some(major) => format!("{name} {major}"),
        None => name.to_owned(),
    }
}

fn major(version: &str) -> Option<&str> {
    let major = version.split('.').next().unwrap_or_default();
    let plausible =
        !major.is_empty() && major.len() <= 5 && major.bytes().all(|b| b.is_ascii_digit());
    plausible.then_some(major)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(user_agent: &str, browser: Option<&str>, operating_system: Option<&str>) {
        let parsed = parse(user_agent);
        assert_eq!(
            parsed,
            ParsedUserAgent {
                browser: browser.map(str::to_owned),
                operating_system: operating_system.map(str::to_owned),
            },
            "for {user_agent:?}"
        );
    }

    // Windows 11 sends exactly the Windows 10 string, so one case covers both.
    #[test]
    fn chrome_on_windows_10_and_11() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            Some("Chrome 131"),
            Some("Windows 10"),
        );
    }

    #[test]
    fn edge_on_windows_is_not_chrome() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            Some("Edge 131"),
            Some("Windows 10"),
        );
    }

    #[test]
    fn firefox_on_windows() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            Some("Firefox 133"),
            Some("Windows 10"),
        );
    }

    #[test]
    fn chrome_on_macos() {
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            Some("Chrome 131"),
            Some("macOS"),
        );
    }

    #[test]
    fn safari_on_macos() {
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
            Some("Safari 18"),
            Some("macOS"),
        );
    }

    #[test]
    fn firefox_on_macos() {
        check(
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:133.0) Gecko/20100101 Firefox/133.0",
            Some("Firefox 133"),
            Some("macOS"),
        );
    }

    #[test]
    fn safari_on_iphone() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
            Some("Safari 18"),
            Some("iOS 18"),
        );
    }

    #[test]
    fn chrome_on_ios_is_not_safari() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
            Some("Chrome 131"),
            Some("iOS 17"),
        );
    }

    #[test]
    fn firefox_on_ios_is_not_safari() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15",
            Some("Firefox 133"),
            Some("iOS 17"),
        );
    }

    #[test]
    fn edge_on_ios_is_not_safari() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 EdgiOS/131.2903.68 Mobile/15E148 Safari/605.1.15",
            Some("Edge 131"),
            Some("iOS 18"),
        );
    }

    #[test]
    fn safari_on_ipad_is_ios() {
        check(
            "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
            Some("Safari 17"),
            Some("iOS 17"),
        );
    }

    #[test]
    fn chrome_on_android_with_full_version() {
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
            Some("Chrome 131"),
            Some("Android 14"),
        );
    }

    #[test]
    fn chrome_on_android_with_reduced_user_agent_has_no_os_version() {
        check(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            Some("Chrome 131"),
            Some("Android"),
        );
    }

    #[test]
    fn firefox_on_android() {
        check(
            "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
            Some("Firefox 133"),
            Some("Android 14"),
        );
    }

    #[test]
    fn samsung_internet_on_android_is_not_chrome() {
        check(
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
            Some("Samsung Internet 26"),
            Some("Android 14"),
        );
    }

    #[test]
    fn edge_on_android_is_not_chrome() {
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 EdgA/131.0.0.0",
            Some("Edge 131"),
            Some("Android 14"),
        );
    }

    #[test]
    fn android_webview_has_no_bogus_version() {
        check(
            "Mozilla/5.0 (Linux; Android 14; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36",
            Some("WebView"),
            Some("Android 14"),
        );
    }

    #[test]
    fn ios_in_app_web_view_is_not_safari() {
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            Some("WebView"),
            Some("iOS 17"),
        );
    }

    #[test]
    fn chrome_on_linux_and_chromeos() {
        check(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            Some("Chrome 131"),
            Some("Linux"),
        );
        check(
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            Some("Chrome 131"),
            Some("ChromeOS"),
        );
    }

    #[test]
    fn office_client_has_os_but_no_browser() {
        check(
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
            None,
            Some("Windows 10"),
        );
    }

    #[test]
    fn windows_without_version_is_plain_windows() {
        check(
            "Windows-AzureAD-Authentication-Provider/1.0",
            None,
            Some("Windows"),
        );
    }

    #[test]
    fn garbage_and_non_browsers_get_no_browser() {
        for user_agent in [
            "asdf qwer zxcv",
            "Mozilla/5.0",
            "curl/8.5.0",
            "python-requests/2.32.3",
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "\u{0}\u{1}\u{7f} ☃☃☃ ))((;;",
            "Chrome/",
            "Firefox/abc",
        ] {
            let parsed = parse(user_agent);
            assert_eq!(parsed.browser, None, "for {user_agent:?}");
            for value in [&parsed.browser, &parsed.operating_system]
                .into_iter()
                .flatten()
            {
                assert!(!value.contains("UNKNOWN"), "{user_agent:?} gave {value:?}");
            }
        }
    }

    #[test]
    fn empty_and_blank_give_nothing() {
        check("", None, None);
        check("   \t ", None, None);
    }

    #[test]
    fn only_the_first_1024_bytes_are_parsed() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        // Still recognised with a huge tail ...
        check(
            &format!("{chrome} {}", "x".repeat(100_000)),
            Some("Chrome 131"),
            Some("Windows 10"),
        );
        // ... and tokens beyond the limit are ignored.
        check(
            &format!("{} {chrome}", "x".repeat(MAX_USER_AGENT_BYTES)),
            None,
            None,
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        // A 3-byte character straddling the limit must be dropped, not split.
        let text = format!("{}€€", "a".repeat(MAX_USER_AGENT_BYTES - 1));
        assert_eq!(
            truncate(&text, MAX_USER_AGENT_BYTES).len(),
            MAX_USER_AGENT_BYTES - 1
        );
        let _ = parse(&text);
        assert_eq!(truncate("short", MAX_USER_AGENT_BYTES), "short");
    }

    #[test]
    fn token_soup_never_panics_or_leaks_unknown() {
        // Deterministic mix of real User-Agent fragments and odd characters, to
        // exercise woothee's rules on inputs no browser would send.
        const PIECES: &[&str] = &[
            "Mozilla/5.0 ",
            "(Windows NT 10.0; ",
            "Win64; x64) ",
            "(iPhone; CPU iPhone OS 17_7 like Mac OS X) ",
            "(Linux; Android 10; K) ",
            "Android ",
            "Chrome/",
            "CriOS/",
            "FxiOS/",
            "Edg/",
            "EdgA/",
            "SamsungBrowser/",
            "Firefox/",
            "Version/",
            "Safari/",
            "131.0",
            "..",
            "_",
            " rv:",
            "wv",
            "Trident/7.0;",
            "MSIE ",
            "OPR/",
            "bot",
            "€",
            "☃",
            ";",
            ")",
            "(",
            "\u{0}",
            " ",
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..3000 {
            let mut user_agent = String::new();
            for _ in 0..(state % 12) {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                let index = usize::try_from(state >> 33).unwrap_or_default() % PIECES.len();
                user_agent.push_str(PIECES[index]);
            }
            let parsed = parse(&user_agent);
            for value in [&parsed.browser, &parsed.operating_system]
                .into_iter()
                .flatten()
            {
                assert!(!value.is_empty(), "{user_agent:?}");
                assert!(!value.contains("UNKNOWN"), "{user_agent:?} gave {value:?}");
            }
        }
    }

    #[test]
    fn major_version_rejects_non_numbers() {
        assert_eq!(major("131.0.0.0"), Some("131"));
        assert_eq!(major("18"), Some("18"));
        assert_eq!(major("UNKNOWN"), None);
        assert_eq!(major(""), None);
        assert_eq!(major("NT 10.0"), None);
        assert_eq!(major("12345678.1"), None);
    }
}
