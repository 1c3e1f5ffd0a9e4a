//! Browser and operating system of a sign-in, read from its User-Agent string.
//!
//! This module owns the turning of a raw User-Agent into the two display values
//! that Graph reports under `deviceDetail`: `browser` and `operatingSystem`.
//!
//! # Where the recognition comes from
//!
//! The recognition itself is done by the [`ua_parser`] crate, the Rust
//! implementation of the ua-parser project (Apache-2.0, maintained by that
//! project, 0.2.2 released in March 2026), with the regexes of the same
//! project's uap-core. The crate ships no data, so the `user_agent_parsers`
//! and `os_parsers` sections of uap-core's `regexes.yaml` are vendored, as
//! JSON, in `query-service/vendor/uap-core/` (Apache-2.0, Copyright 2009
//! Google Inc.; its README says which version, what was changed and how to
//! update it) and compiled into the binary with `include_str!`: no data file
//! at run time, no network. The regexes are compiled once, when the service
//! starts (about 50 ms and 11 MiB in a release build). Matching costs about 4 µs a
//! string, twice woothee's, so results are kept in a small bounded cache keyed
//! by the (truncated) string; see `CACHE_CAPACITY` for why and how big.
//!
//! It replaces `woothee`, whose last release is from 2021. Other maintained
//! crates were weighed: `user-agent-parser` also needs uap-core's data (it
//! ships none either), and in a release build it took about 100 µs a call,
//! 0.4 s to load and 80 MiB of memory with the same two sections; `uaparser`
//! had its last release in 2024 and loads its data with the unmaintained
//! `serde_yaml`. `ua_parser` pre-filters its regexes with literal atoms
//! (`regex-filtered`), so a call costs a few µs instead of a hundred.
//!
//! This module owns the naming scheme on top of uap-core's names and the
//! corrections listed below.
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
//! # Corrections on top of uap-core
//!
//! uap-core names every program that sends a User-Agent (browsers, but also
//! bots, HTTP libraries, mail clients, in-app web views) and has no notion of
//! "a browser". So:
//!
//! * Browsers are an allowlist (`browser()` below): uap-core's families of
//!   the same browser are merged under one name (`Chrome Mobile` and `Chrome
//!   Mobile iOS` are `Chrome`, `Mobile Safari` is `Safari`, `Edge Mobile` is `Edge`,
//!   `Firefox Mobile` and `Firefox iOS` are `Firefox`, `IE` is `Internet
//!   Explorer`), and every family not on the list (Googlebot, HeadlessChrome,
//!   curl, Python Requests, Outlook, ...) gives `None`. Beyond the browsers of
//!   the scheme above, the list has those that `woothee`, the previous parser,
//!   named (Internet Explorer, Opera, Vivaldi, Yandex Browser, Sleipnir, Google
//!   Search App) and a few more (Opera Mini, Whale, UC Browser, DuckDuckGo). A
//!   new browser that uap-core learns to name is `None` here until it is added.
//! * An app that uap-core names (Facebook, Instagram, LINE, ...) is `"WebView"`
//!   when the string has the shape of an embedded web view: Android's `; wv)`
//!   marker, or an iPhone/iPad/iPod WebKit without the `Safari/` token.
//!   uap-core's own iOS web-view family is trusted only with that shape too,
//!   since it is also its fallback for any string naming an iPhone (native
//!   apps' HTTP clients, which get no browser).
//! * A browser version of four or more digits is a WebKit build number (macOS's
//!   background fetches send a bare `Safari/6533.18.5`), so gives `None`.
//! * Operating systems keep uap-core's name except where the scheme differs:
//!   `Mac OS X` is `macOS`, `Chrome OS` is `ChromeOS`, the Linux distributions
//!   uap-core tells apart (Ubuntu, Fedora, ...) are all `Linux`, and Windows
//!   versions are written `Windows 8.1`, `Windows XP`, ... Any other name
//!   (`FreeBSD`, `BlackBerry OS`, `Tizen`, ...) is shown as uap-core has it,
//!   without a version.
//! * A lone `Win32` token is taken by uap-core for Windows 95; it says nothing
//!   about the version, so it gives plain `"Windows"`.
//!
//! # Known limits
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
//! * The old Android stock browser (uap-core's `Android` family), Brave (whose
//!   token carries no usable version) and the many smaller browsers uap-core
//!   knows are not on the allowlist and give no browser.
//! * A crawler that uap-core does not know and that copies a browser's tokens
//!   is named as that browser. Smart TVs' `HbbTV` strings give the TV maker
//!   (`"Samsung"`, `"Sony"`, ...) as operating system, as uap-core has it.
//! * Only the first [`MAX_USER_AGENT_BYTES`] bytes are parsed, so a hostile
//!   header cannot make enrichment expensive; the browser and OS tokens of any
//!   real User-Agent come well before that.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use ua_parser::{os, user_agent};

/// Browser and operating system as shown in a sign-in's `deviceDetail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedUserAgent {
    pub browser: Option<String>,
    pub operating_system: Option<String>,
}

/// How much of a User-Agent is looked at.
pub const MAX_USER_AGENT_BYTES: usize = 1024;

const NOTHING: ParsedUserAgent = ParsedUserAgent {
    browser: None,
    operating_system: None,
};

/// uap-core's browser and OS regexes; see `vendor/uap-core/README.md`.
const REGEXES: &str = include_str!("../../vendor/uap-core/regexes.json");

/// The vendored regexes, compiled at start-up ([`compile_rules`]) or else on first use.
static RULES: LazyLock<Option<Rules>> = LazyLock::new(Rules::load);

struct Rules {
    browsers: user_agent::Extractor<'static>,
    systems: os::Extractor<'static>,
}

/// The two sections of the vendored file that are used (`_notice` is ignored).
#[derive(serde::Deserialize)]
struct Sections {
    user_agent_parsers: Vec<user_agent::Parser<'static>>,
    os_parsers: Vec<os::Parser<'static>>,
}

impl Rules {
    fn load() -> Option<Self> {
        match Self::compile() {
            Ok(rules) => Some(rules),
            Err(error) => {
                // Cannot happen with the vendored file (a unit test compiles it); if
                // it ever did, sign-ins are still recorded, only without browser and OS.
                tracing::error!(%error, "user-agent regexes do not compile; no browser or OS");
                None
            }
        }
    }

    fn compile() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let sections: Sections = serde_json::from_str(REGEXES)?;
        let browsers = user_agent::Builder::new()
            .push_all(sections.user_agent_parsers)?
            .build()?;
        let systems = os::Builder::new().push_all(sections.os_parsers)?.build()?;
        Ok(Self { browsers, systems })
    }
}

/// Compiles the regexes now rather than in the first batch that needs them (about 50 ms in a
/// release build, more in a debug one).
pub fn compile_rules() {
    LazyLock::force(&RULES);
}

/// Reads the browser and operating system from a User-Agent string.
pub fn parse(user_agent: &str) -> ParsedUserAgent {
    let user_agent = truncate(user_agent, MAX_USER_AGENT_BYTES).trim();
    if user_agent.is_empty() {
        return NOTHING;
    }
    // The lock is held for a lookup or an insert only, never while parsing.
    let cached = lock(&CACHE).get(user_agent);
    if let Some(parsed) = cached {
        return parsed;
    }
    let parsed = parse_uncached(user_agent);
    lock(&CACHE).insert(user_agent, parsed.clone());
    parsed
}

/// How many distinct (truncated) User-Agents are remembered.
///
/// Matching against uap-core's regexes costs about 4 µs a string in a release
/// build (up to 7 µs for some iPhone strings), against about 2 µs for woothee,
/// and ingestion parses every sign-in that arrives without a browser. But
/// User-Agents repeat heavily (a few hundred distinct values per tenant per
/// hour), so the result is remembered: a hit is a hash lookup and two small
/// copies. 4,096 entries hold the working set of many tenants; the bound
/// keeps memory at a few MiB even when every string is a distinct 1 KiB one
/// (a client that sends random User-Agents costs a parse each, as without the
/// cache). When full, the cache is simply emptied: that is cheaper and simpler
/// than tracking recency, and the working set refills it within a batch or two.
/// One lock suffices: it is held only for a lookup or an insert (a whole hit
/// costs about 0.1 µs), so the concurrent batches of a replica rarely meet on it.
const CACHE_CAPACITY: usize = 4096;

static CACHE: LazyLock<Mutex<BoundedCache>> =
    LazyLock::new(|| Mutex::new(BoundedCache::new(CACHE_CAPACITY)));

fn lock(cache: &Mutex<BoundedCache>) -> std::sync::MutexGuard<'_, BoundedCache> {
    // A panic elsewhere while holding the lock leaves the map consistent (each
    // operation is a single insert, lookup or clear), so poisoning is ignored.
    cache.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A map with a size bound, emptied when full.
struct BoundedCache {
    entries: HashMap<Box<str>, ParsedUserAgent>,
    capacity: usize,
}

impl BoundedCache {
    fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
        }
    }

    fn get(&self, user_agent: &str) -> Option<ParsedUserAgent> {
        self.entries.get(user_agent).cloned()
    }

    fn insert(&mut self, user_agent: &str, parsed: ParsedUserAgent) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(user_agent) {
            self.entries.clear();
        }
        self.entries.insert(user_agent.into(), parsed);
    }
}

fn parse_uncached(user_agent: &str) -> ParsedUserAgent {
    let Some(rules) = RULES.as_ref() else {
        return NOTHING;
    };
    ParsedUserAgent {
        browser: rules
            .browsers
            .extract(user_agent)
            .and_then(|found| browser(&found, user_agent)),
        operating_system: rules
            .systems
            .extract(user_agent)
            .and_then(|found| operating_system(&found, user_agent)),
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

/// The allowlist of browsers: uap-core's family names, merged under the name
/// shown. Everything else uap-core names (bots, libraries, apps) is no browser,
/// unless the string has the shape of an in-app web view.
fn browser(found: &user_agent::ValueRef<'_>, user_agent: &str) -> Option<String> {
    let name = match found.family.as_ref() {
        "Chrome" | "Chrome Mobile" | "Chrome Mobile iOS" => "Chrome",
        "Edge" | "Edge Mobile" => "Edge",
        "Firefox" | "Firefox Mobile" | "Firefox iOS" | "Firefox Beta" | "Firefox Alpha" => {
            "Firefox"
        }
        "Safari" | "Mobile Safari" => "Safari",
        "Samsung Internet" => "Samsung Internet",
        "IE" | "IE Mobile" => "Internet Explorer",
        "Opera" | "Opera Mobile" | "Opera Tablet" => "Opera",
        "Opera Mini" => "Opera Mini",
        "Vivaldi" => "Vivaldi",
        "Yandex Browser" => "Yandex Browser",
        "Whale" => "Whale",
        "UC Browser" => "UC Browser",
        "DuckDuckGo" | "DuckDuckGo Mobile" => "DuckDuckGo",
        "Sleipnir" => "Sleipnir",
        // uap-core's name for the Google Search App (`GSA/`).
        "Google" => "Google Search App",
        "Chrome Mobile WebView" => return Some("WebView".to_owned()),
        // uap-core's `Mobile Safari UI/WKWebView` is also its last resort for any
        // string that mentions an iPhone (native apps' HTTP clients); like an
        // app's own name (Facebook, Instagram, LINE, ...) it is a web view only
        // when the string has the shape of one.
        _ if is_web_view(user_agent) => return Some("WebView".to_owned()),
        _ => return None,
    };
    // Every real browser sends its version; a browser token without a numeric
    // one ("Firefox/abc") is junk or a spoof, not a browser we can name. Nor is
    // a four-digit one: that is a WebKit build number, as in the bare
    // `Safari/6533.18.5` of macOS's background fetches.
    let major = major(found.major?).filter(|major| major.len() <= 3)?;
    Some(format!("{name} {major}"))
}

// The shapes of an embedded web view: Android's `wv` marker, or an Apple
// mobile device's WebKit without the `Safari/` token that Safari itself sends.
fn is_web_view(user_agent: &str) -> bool {
    if user_agent.contains("; wv)") {
        return true;
    }
    let apple_mobile = ["iPhone", "iPad", "iPod"]
        .iter()
        .any(|device| user_agent.contains(device));
    apple_mobile && user_agent.contains("AppleWebKit") && !user_agent.contains("Safari/")
}

fn operating_system(found: &os::ValueRef<'_>, user_agent: &str) -> Option<String> {
    let name = match found.os.as_ref() {
        // uap-core says "Other" for a few crawlers it recognises by name.
        "" | "Other" => return None,
        "Windows" => return Some(windows(found, user_agent)),
        "Mac OS X" => "macOS",
        "iOS" => return Some(with_major("iOS", found.major.as_deref())),
        "Android" if is_reduced_android(user_agent) => "Android",
        "Android" => return Some(with_major("Android", found.major.as_deref())),
        "Chrome OS" => "ChromeOS",
        "Linux" | "Ubuntu" | "Kubuntu" | "Lubuntu" | "Debian" | "Fedora" | "Red Hat" | "CentOS"
        | "SUSE" | "openSUSE" | "Gentoo" | "Arch Linux" | "Slackware" | "Mageia" | "Mandriva"
        | "Linux Mint" | "PCLinuxOS" | "Puppy" | "BackTrack" => "Linux",
        // Already readable: "Windows Phone", "Mac OS", "FreeBSD", "Tizen", ...
        other => other,
    };
    Some(name.to_owned())
}

fn windows(found: &os::ValueRef<'_>, user_agent: &str) -> String {
    let version = match found.major.as_deref() {
        // uap-core's last Windows rule reads a bare `Win32` as Windows 95.
        Some("95") if !user_agent.contains("95") => None,
        Some(
            named @ ("XP" | "Vista" | "2000" | "ME" | "NT 4.0" | "CE" | "RT" | "RT 8" | "3.1"
            | "95" | "98"),
        ) => Some(named),
        Some(number) => major(number),
        None => None,
    };
    match (version, found.minor.as_deref()) {
        (Some(eight @ ("8" | "RT 8")), Some("1")) => format!("Windows {eight}.1"),
        (Some(version), _) => format!("Windows {version}"),
        (None, _) => "Windows".to_owned(),
    }
}

// Chrome's User-Agent reduction replaces the real Android version and device
// model with this fixed text.
fn is_reduced_android(user_agent: &str) -> bool {
    user_agent.contains("Android 10; K)")
}

fn with_major(name: &str, version: Option<&str>) -> String {
    match version.and_then(major) {
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
        // exercise the parser's rules on inputs no browser would send.
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
    fn the_vendored_regexes_compile() {
        assert!(RULES.is_some());
    }

    #[test]
    fn windows_versions_by_their_names() {
        for (token, name) in [
            ("Windows NT 6.1; Win64; x64", "Windows 7"),
            ("Windows NT 6.3; Win64; x64", "Windows 8.1"),
            ("Windows NT 6.2; WOW64", "Windows 8"),
            ("Windows NT 6.0", "Windows Vista"),
            ("Windows NT 5.1", "Windows XP"),
        ] {
            check(
                &format!("Mozilla/5.0 ({token}; rv:115.0) Gecko/20100101 Firefox/115.0"),
                Some("Firefox 115"),
                Some(name),
            );
        }
    }

    #[test]
    fn a_bare_win32_token_is_no_windows_version() {
        check(
            "Mozilla/4.0 (compatible; Win32; WinHttp.WinHttpRequest.5)",
            None,
            Some("Windows"),
        );
    }

    #[test]
    fn linux_distributions_are_linux() {
        check(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            Some("Firefox 133"),
            Some("Linux"),
        );
        check(
            "Mozilla/5.0 (X11; Fedora; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            Some("Firefox 133"),
            Some("Linux"),
        );
    }

    #[test]
    fn internet_explorer_and_opera() {
        check(
            "Mozilla/5.0 (Windows NT 10.0; WOW64; Trident/7.0; rv:11.0) like Gecko",
            Some("Internet Explorer 11"),
            Some("Windows 10"),
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
            Some("Opera 115"),
            Some("Windows 10"),
        );
    }

    #[test]
    fn an_app_inside_its_own_web_view_is_webview() {
        // Facebook on iOS and on Android: uap-core names the app, the shape says web view.
        check(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/490.0.0.45.102;FBBV/650712215;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.7;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
            Some("WebView"),
            Some("iOS 17"),
        );
        check(
            "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP2A.240905.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.81 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/490.0.0.53.74;]",
            Some("WebView"),
            Some("Android 14"),
        );
    }

    #[test]
    fn an_apple_app_http_client_is_no_browser() {
        // uap-core falls back to its web-view family for anything naming an iPhone.
        check(
            "4 Pics 1 Word/3.9 (iPhone; iOS 7.0.2; Scale/2.00)",
            None,
            Some("iOS 7"),
        );
        // macOS's background fetches: a WebKit build number, not a Safari version.
        let fetch = "Safari/19619.1.26.31.6 CFNetwork/1568.100.1 Darwin/24.0.0 (x86_64)";
        assert_eq!(parse(fetch).browser, None);
    }

    #[test]
    fn crawlers_dressed_as_browsers_get_no_browser() {
        check(
            "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            None,
            Some("Android 6"),
        );
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            None,
            Some("Windows 10"),
        );
    }

    #[test]
    fn cached_results_are_the_parsed_ones() {
        for user_agent in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
            "curl/8.5.0",
            "Windows-AzureAD-Authentication-Provider/1.0",
        ] {
            let first = parse(user_agent);
            assert_eq!(first, parse_uncached(user_agent), "for {user_agent:?}");
            assert_eq!(parse(user_agent), first, "for {user_agent:?}");
        }
        // The key is the truncated string, so a huge tail shares the entry.
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let long = format!("{chrome}{}", " ".repeat(2 * MAX_USER_AGENT_BYTES));
        assert_eq!(parse(&long), parse(chrome));
    }

    #[test]
    fn the_cache_is_emptied_when_full() {
        let parsed = |browser: &str| ParsedUserAgent {
            browser: Some(browser.to_owned()),
            operating_system: None,
        };
        let mut cache = BoundedCache::new(2);
        cache.insert("a", parsed("A"));
        cache.insert("b", parsed("B"));
        // Replacing a present key does not count as growth.
        cache.insert("b", parsed("B"));
        assert_eq!(cache.get("a"), Some(parsed("A")));
        cache.insert("c", parsed("C"));
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), None);
        assert_eq!(cache.get("c"), Some(parsed("C")));
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
