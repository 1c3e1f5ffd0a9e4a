//! The contract the `$filter` parser is fuzzed against, in one place so that the cargo-fuzz
//! target (`query-service/fuzz`, run by hand for minutes or hours) and the CI-sized unit test
//! below (a few thousand mutated inputs in every `cargo test`) check exactly the same thing.
//!
//! For any text a caller can send, [`check`] requires that [`parse`] returns without panicking
//! and that:
//! - an error points at a character inside the input or just past its end, and says something;
//! - "no filter" comes back only for empty or whitespace-only input;
//! - a parsed filter translates to SQL made only of column names, keywords, operators and
//!   `$n` placeholders (no quote, semicolon or comment can appear, so no value ever reaches the
//!   SQL text), with placeholders `$1..=$n` matching the parameters one to one;
//! - a parsed filter evaluates in memory without panicking, and parses to the same tree when
//!   surrounded by whitespace.

use super::filter::{Expr, MAX_FILTER_BYTES, Property, Row, Value, matches, parse, to_sql};

/// A row where every property is absent: evaluation must cope with the emptiest sign-in.
struct Absent;

impl Row for Absent {
    fn get(&self, _property: Property) -> Value {
        Value::Null
    }
}

/// Checks the parser's contract on one input; `Err` says which part was broken. Panics only
/// where the code under test panics.
pub fn check(input: &str) -> Result<(), String> {
    match parse(input) {
        Err(error) => {
            let length = input.chars().count();
            if error.position > length {
                return Err(format!(
                    "error position {} is past the end of the {length}-character input: {error}",
                    error.position
                ));
            }
            if error.message.trim().is_empty() {
                return Err(format!("empty error message at {}", error.position));
            }
            Ok(())
        }
        Ok(None) if input.trim().is_empty() => Ok(()),
        Ok(None) => Err("non-blank input parsed as no filter".to_owned()),
        Ok(Some(expr)) => {
            check_sql(&expr)?;
            matches(&expr, &Absent);
            if input.len() + 2 <= MAX_FILTER_BYTES {
                let padded = parse(&format!(" {input}\n"));
                if padded != Ok(Some(expr.clone())) {
                    return Err(format!(
                        "surrounding whitespace changed the result: {expr:?} became {padded:?}"
                    ));
                }
            }
            Ok(())
        }
    }
}

fn check_sql(expr: &Expr) -> Result<(), String> {
    let mut params = Vec::new();
    let sql = to_sql(expr, &mut params);
    if sql.is_empty() {
        return Err("empty SQL condition".to_owned());
    }
    if let Some(bad) = sql.chars().find(|c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '_' | ' ' | '$' | '(' | ')' | '<' | '>' | '='))
    }) {
        return Err(format!("SQL condition contains {bad:?}: {sql}"));
    }
    let mut used = vec![false; params.len()];
    for placeholder in sql.split('$').skip(1) {
        let digits: String = placeholder
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let slot = digits
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|index| used.get_mut(index))
            .ok_or_else(|| format!("placeholder ${digits} has no parameter: {sql}"))?;
        *slot = true;
    }
    match used.iter().position(|used| !used) {
        Some(unused) => Err(format!("parameter ${} is never used: {sql}", unused + 1)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::path::Path;
    use std::sync::LazyLock;

    /// The seed corpus and dictionary of the fuzz target: the unit test mutates the same
    /// inputs a fuzzing run starts from.
    fn fuzz_dir() -> &'static Path {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz"))
    }

    static SEEDS: LazyLock<Vec<String>> = LazyLock::new(seeds);
    static TOKENS: LazyLock<Vec<String>> = LazyLock::new(dictionary);

    fn seeds() -> Vec<String> {
        let mut seeds: Vec<String> = std::fs::read_dir(fuzz_dir().join("seeds"))
            .expect("fuzz/seeds exists")
            .map(|entry| {
                std::fs::read_to_string(entry.expect("seed entry").path()).expect("seed is UTF-8")
            })
            .collect();
        seeds.sort();
        assert!(
            seeds.len() >= 10,
            "fuzz/seeds has only {} seeds",
            seeds.len()
        );
        seeds
    }

    /// Reads libFuzzer's dictionary format: `name="value"` per line, `\"`, `\\` and `\xHH`
    /// escapes, `#` comments.
    fn dictionary() -> Vec<String> {
        let text =
            std::fs::read_to_string(fuzz_dir().join("filter.dict")).expect("fuzz/filter.dict");
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .map(|line| {
                let start = line.find('"').expect("dictionary entry has a quote") + 1;
                let end = line
                    .rfind('"')
                    .expect("dictionary entry has a closing quote");
                unescape(&line[start..end])
            })
            .collect();
        assert!(
            tokens.len() >= 20,
            "fuzz/filter.dict has only {} tokens",
            tokens.len()
        );
        tokens
    }

    fn unescape(escaped: &str) -> String {
        let mut bytes = Vec::new();
        let mut rest = escaped.as_bytes();
        while let Some((&first, tail)) = rest.split_first() {
            match (first, tail) {
                (b'\\', [b'x', high, low, tail @ ..]) => {
                    let hex = std::str::from_utf8(&[*high, *low])
                        .ok()
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                        .expect("\\xHH escape");
                    bytes.push(hex);
                    rest = tail;
                }
                (b'\\', [escaped, tail @ ..]) => {
                    bytes.push(*escaped);
                    rest = tail;
                }
                _ => {
                    bytes.push(first);
                    rest = tail;
                }
            }
        }
        String::from_utf8(bytes).expect("dictionary token is UTF-8")
    }

    /// One edit of a mutated input. Positions are fractions of the current length, so an edit
    /// stays meaningful whatever the edits before it did.
    #[derive(Debug, Clone)]
    enum Edit {
        Insert {
            at: f64,
            token: usize,
            spaced: bool,
        },
        Replace {
            at: f64,
            len: usize,
            token: usize,
        },
        Delete {
            at: f64,
            len: usize,
        },
        /// Crossover: this input up to `at`, then another seed from `from`.
        Splice {
            at: f64,
            seed: usize,
            from: f64,
        },
        /// Repeats a slice, which is what reaches the depth, term and length limits.
        Repeat {
            at: f64,
            len: usize,
            times: usize,
        },
        Char {
            at: f64,
            c: char,
        },
        /// Wraps everything in parentheses or `not`s, towards the depth limit.
        Nest {
            levels: usize,
            nots: bool,
        },
        /// Joins copies of everything with `and`/`or`, towards the term and length limits.
        Chain {
            copies: usize,
            or: bool,
        },
    }

    fn edit() -> impl Strategy<Value = Edit> {
        let at = 0.0..=1.0f64;
        prop_oneof![
            4 => (at.clone(), any::<usize>(), any::<bool>())
                .prop_map(|(at, token, spaced)| Edit::Insert { at, token, spaced }),
            2 => (at.clone(), 1..8usize, any::<usize>())
                .prop_map(|(at, len, token)| Edit::Replace { at, len, token }),
            2 => (at.clone(), 1..12usize).prop_map(|(at, len)| Edit::Delete { at, len }),
            2 => (at.clone(), any::<usize>(), 0.0..=1.0f64)
                .prop_map(|(at, seed, from)| Edit::Splice { at, seed, from }),
            1 => (at.clone(), 1..12usize, 2..60usize)
                .prop_map(|(at, len, times)| Edit::Repeat { at, len, times }),
            1 => (at, any::<char>()).prop_map(|(at, c)| Edit::Char { at, c }),
            1 => (1..40usize, any::<bool>()).prop_map(|(levels, nots)| Edit::Nest { levels, nots }),
            1 => (2..120usize, any::<bool>()).prop_map(|(copies, or)| Edit::Chain { copies, or }),
        ]
    }

    fn index(at: f64, len: usize) -> usize {
        // Truncation is the point: a fraction of the length, rounded down.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let index = (at * len as f64) as usize;
        index.min(len)
    }

    fn apply(input: &str, edits: &[Edit], seeds: &[String], tokens: &[String]) -> String {
        let mut chars: Vec<char> = input.chars().collect();
        for edit in edits {
            let at = |fraction: f64, chars: &Vec<char>| index(fraction, chars.len());
            match edit {
                Edit::Insert {
                    at: f,
                    token,
                    spaced,
                } => {
                    let i = at(*f, &chars);
                    let token = &tokens[token % tokens.len()];
                    let text = if *spaced {
                        format!(" {token} ")
                    } else {
                        token.clone()
                    };
                    chars.splice(i..i, text.chars());
                }
                Edit::Replace { at: f, len, token } => {
                    let i = at(*f, &chars);
                    let end = (i + len).min(chars.len());
                    chars.splice(i..end, tokens[token % tokens.len()].chars());
                }
                Edit::Delete { at: f, len } => {
                    let i = at(*f, &chars);
                    let end = (i + len).min(chars.len());
                    chars.drain(i..end);
                }
                Edit::Splice { at: f, seed, from } => {
                    let i = at(*f, &chars);
                    let other: Vec<char> = seeds[seed % seeds.len()].chars().collect();
                    let j = index(*from, other.len());
                    chars.truncate(i);
                    chars.extend_from_slice(&other[j..]);
                }
                Edit::Repeat { at: f, len, times } => {
                    let i = at(*f, &chars);
                    let end = (i + len).min(chars.len());
                    let slice: Vec<char> = chars[i..end].to_vec();
                    for _ in 1..*times {
                        chars.splice(i..i, slice.iter().copied());
                    }
                }
                Edit::Char { at: f, c } => {
                    let i = at(*f, &chars);
                    chars.insert(i, *c);
                }
                Edit::Nest { levels, nots } => {
                    let (open, close) = if *nots { ("not ", "") } else { ("(", ")") };
                    let text: String = chars.iter().collect();
                    chars = format!("{}{text}{}", open.repeat(*levels), close.repeat(*levels))
                        .chars()
                        .collect();
                }
                Edit::Chain { copies, or } => {
                    let text: String = chars.iter().collect();
                    let joiner = if *or { " or " } else { " and " };
                    let needed = MAX_MUTATED_CHARS / (text.chars().count() + joiner.len()) + 1;
                    chars = vec![text.as_str(); (*copies).min(needed)]
                        .join(joiner)
                        .chars()
                        .collect();
                }
            }
            chars.truncate(MAX_MUTATED_CHARS);
        }
        chars.into_iter().collect()
    }

    /// Inputs longer than this are all refused by the same length check, so edits stop
    /// growing them (and the test stays fast).
    const MAX_MUTATED_CHARS: usize = MAX_FILTER_BYTES + 64;

    #[test]
    fn every_seed_keeps_the_contract_and_the_graph_filters_parse() {
        for seed in SEEDS.iter() {
            assert_eq!(check(seed), Ok(()), "seed {seed:?}");
        }
        for graph in [
            "startswith(appDisplayName,'Azure')",
            "conditionalAccessStatus eq 'failure'",
            "status/errorCode eq 50126",
            "flaggedforReview eq true and createdDateTime ge 2021-10-01 and userPrincipalname eq 'user@contoso.com'",
        ] {
            assert!(matches!(parse(graph), Ok(Some(_))), "{graph}");
        }
    }

    /// The mutated inputs of one CI run: deterministic, so a failure names an input that
    /// fails again on the next run.
    fn mutated_inputs(count: usize) -> Vec<String> {
        let mut runner = TestRunner::deterministic();
        let strategy = (any::<usize>(), prop::collection::vec(edit(), 0..6));
        (0..count)
            .map(|_| {
                let (seed, edits) = strategy
                    .new_tree(&mut runner)
                    .expect("strategy generates")
                    .current();
                apply(&SEEDS[seed % SEEDS.len()], &edits, &SEEDS, &TOKENS)
            })
            .collect()
    }

    #[test]
    fn a_few_thousand_mutated_seeds_keep_the_parsers_contract() {
        // A few thousand inputs walk every error path of the parser in each CI run, in well
        // under a second; long runs belong to cargo-fuzz (see fuzz/README.md).
        let inputs = mutated_inputs(4_000);
        let mut parsed = 0;
        let mut problems = std::collections::BTreeSet::new();
        for input in &inputs {
            assert_eq!(check(input), Ok(()), "input {input:?}");
            match parse(input) {
                Ok(_) => parsed += 1,
                // The message up to the first quoted or numeric detail: the kind of problem.
                Err(error) => {
                    let kind = error
                        .message
                        .split(|c: char| c == '\'' || c.is_ascii_digit())
                        .next()
                        .unwrap_or_default()
                        .trim_end()
                        .to_owned();
                    problems.insert(kind);
                }
            }
        }
        // The mutations must reach both sides of the parser, or the check proves little.
        assert!(parsed >= 400, "only {parsed} of 4000 mutated inputs parse");
        for limit in [
            "filter nests deeper than",
            "filter has more than",
            "filter is longer than",
        ] {
            assert!(
                problems.contains(limit),
                "no input reached '{limit}': {problems:#?}"
            );
        }
        assert!(
            problems.len() >= 20,
            "only {} kinds of error reached: {problems:#?}",
            problems.len()
        );
    }
}
