//! Microsoft Graph-style OData `$filter` over sign-in events.
//!
//! This module owns the whole path from the text a caller sends to the
//! condition PostgreSQL runs:
//!
//! - the `$filter` grammar: a hand-written lexer and recursive-descent parser
//!   with hard limits on size ([`MAX_FILTER_BYTES`]), nesting ([`MAX_DEPTH`])
//!   and number of terms ([`MAX_TERMS`]), so hostile input costs bounded time
//!   and stack;
//! - type checking of every literal against the property it is compared
//!   with: mismatches are reported with a position, never coerced silently;
//! - translation to a parameterised SQL boolean condition ([`to_sql()`]). The
//!   only text ever written into SQL is column names from a fixed table,
//!   operators, `TRUE`/`FALSE` and `$n` placeholders: no value is ever spliced
//!   into SQL text;
//! - [`matches()`], the in-memory evaluation with the same semantics, used for
//!   live streams and as the oracle the SQL translation is tested against.
//!
//! Semantics follow OData's treatment of absent (NULL) values: `eq`, the
//! ordering operators, `in` and `startswith` are false for an absent value,
//! `ne` is true for it, and `not` is plain two-valued negation.

use std::cmp::Ordering;
use std::error::Error;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveTime, Timelike, Utc};
use postgres_types::{IsNull, ToSql, Type, to_sql_checked};
use uuid::Uuid;

/// Longest accepted filter, in UTF-8 bytes; bounds parse time and the size
/// of the generated SQL.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest accepted nesting of parentheses, `not` and function calls; bounds
/// recursion in the parser and in the translation.
pub const MAX_DEPTH: usize = 32;
/// Most accepted terms (comparisons, `in` lists and `startswith` calls);
/// bounds the work one query can ask of the database.
pub const MAX_TERMS: usize = 100;

/// Why a filter was rejected, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid filter at position {position}: {message}")]
pub struct FilterError {
    /// 0-based offset, in characters (not bytes), of the token where the
    /// problem was found; the input's length when the input ended too early.
    pub position: usize,
    pub message: String,
}

impl FilterError {
    fn new(position: usize, message: impl Into<String>) -> Self {
        FilterError {
            position,
            message: message.into(),
        }
    }
}

/// A sign-in property that filters may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    Id,
    CreatedDateTime,
    UserId,
    UserPrincipalName,
    UserDisplayName,
    UserType,
    AppId,
    AppDisplayName,
    ResourceId,
    ResourceDisplayName,
    IpAddress,
    ClientAppUsed,
    CorrelationId,
    IsInteractive,
    ConditionalAccessStatus,
    StatusErrorCode,
    DeviceId,
    DeviceBrowser,
    DeviceOperatingSystem,
    LocationCity,
    LocationState,
    LocationCountryOrRegion,
    RiskLevelDuringSignIn,
    RiskState,
    FlaggedForReview,
}

/// The type of a property's values, which decides the literals it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Guid,
    String,
    Bool,
    Int,
    DateTime,
}

impl Property {
    pub const ALL: [Property; 25] = [
        Property::Id,
        Property::CreatedDateTime,
        Property::UserId,
        Property::UserPrincipalName,
        Property::UserDisplayName,
        Property::UserType,
        Property::AppId,
        Property::AppDisplayName,
        Property::ResourceId,
        Property::ResourceDisplayName,
        Property::IpAddress,
        Property::ClientAppUsed,
        Property::CorrelationId,
        Property::IsInteractive,
        Property::ConditionalAccessStatus,
        Property::StatusErrorCode,
        Property::DeviceId,
        Property::DeviceBrowser,
        Property::DeviceOperatingSystem,
        Property::LocationCity,
        Property::LocationState,
        Property::LocationCountryOrRegion,
        Property::RiskLevelDuringSignIn,
        Property::RiskState,
        Property::FlaggedForReview,
    ];

    /// Looks a property up by its Graph name, ignoring ASCII case
    /// (`flaggedforReview`, `STATUS/ERRORCODE`, `deviceDetail/browser`).
    pub fn parse(name: &str) -> Option<Property> {
        Property::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// The canonical Graph name, e.g. `status/errorCode`.
    pub fn name(self) -> &'static str {
        match self {
            Property::Id => "id",
            Property::CreatedDateTime => "createdDateTime",
            Property::UserId => "userId",
            Property::UserPrincipalName => "userPrincipalName",
            Property::UserDisplayName => "userDisplayName",
            Property::UserType => "userType",
            Property::AppId => "appId",
            Property::AppDisplayName => "appDisplayName",
            Property::ResourceId => "resourceId",
            Property::ResourceDisplayName => "resourceDisplayName",
            Property::IpAddress => "ipAddress",
            Property::ClientAppUsed => "clientAppUsed",
            Property::CorrelationId => "correlationId",
            Property::IsInteractive => "isInteractive",
            Property::ConditionalAccessStatus => "conditionalAccessStatus",
            Property::StatusErrorCode => "status/errorCode",
            Property::DeviceId => "deviceDetail/deviceId",
            Property::DeviceBrowser => "deviceDetail/browser",
            Property::DeviceOperatingSystem => "deviceDetail/operatingSystem",
            Property::LocationCity => "location/city",
            Property::LocationState => "location/state",
            Property::LocationCountryOrRegion => "location/countryOrRegion",
            Property::RiskLevelDuringSignIn => "riskLevelDuringSignIn",
            Property::RiskState => "riskState",
            Property::FlaggedForReview => "flaggedForReview",
        }
    }

    /// The SQL column holding the property. These constants are the only
    /// identifiers ever written into generated SQL.
    pub fn column(self) -> &'static str {
        match self {
            Property::Id => "id",
            Property::CreatedDateTime => "created_at",
            Property::UserId => "user_id",
            Property::UserPrincipalName => "user_principal_name",
            Property::UserDisplayName => "user_display_name",
            Property::UserType => "user_type",
            Property::AppId => "app_id",
            Property::AppDisplayName => "app_display_name",
            Property::ResourceId => "resource_id",
            Property::ResourceDisplayName => "resource_display_name",
            Property::IpAddress => "ip_address",
            Property::ClientAppUsed => "client_app_used",
            Property::CorrelationId => "correlation_id",
            Property::IsInteractive => "is_interactive",
            Property::ConditionalAccessStatus => "conditional_access_status",
            Property::StatusErrorCode => "error_code",
            Property::DeviceId => "device_id",
            Property::DeviceBrowser => "browser",
            Property::DeviceOperatingSystem => "operating_system",
            Property::LocationCity => "city",
            Property::LocationState => "state",
            Property::LocationCountryOrRegion => "country_or_region",
            Property::RiskLevelDuringSignIn => "risk_level_during_sign_in",
            Property::RiskState => "risk_state",
            Property::FlaggedForReview => "flagged_for_review",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Property::Id | Property::UserId => Kind::Guid,
            Property::CreatedDateTime => Kind::DateTime,
            Property::IsInteractive | Property::FlaggedForReview => Kind::Bool,
            Property::StatusErrorCode => Kind::Int,
            Property::UserPrincipalName
            | Property::UserDisplayName
            | Property::UserType
            | Property::AppId
            | Property::AppDisplayName
            | Property::ResourceId
            | Property::ResourceDisplayName
            | Property::IpAddress
            | Property::ClientAppUsed
            | Property::CorrelationId
            | Property::ConditionalAccessStatus
            | Property::DeviceId
            | Property::DeviceBrowser
            | Property::DeviceOperatingSystem
            | Property::LocationCity
            | Property::LocationState
            | Property::LocationCountryOrRegion
            | Property::RiskLevelDuringSignIn
            | Property::RiskState => Kind::String,
        }
    }
}

/// How a property's kind is named in "expects ..." messages.
fn expected(kind: Kind) -> &'static str {
    match kind {
        Kind::Guid => "a GUID",
        Kind::String => "a string",
        Kind::Bool => "true or false",
        Kind::Int => "an integer",
        Kind::DateTime => "a date or date-time",
    }
}

/// A property's value (in a row) or a literal (in a filter).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    String(String),
    Bool(bool),
    Int(i32),
    Guid(Uuid),
    DateTime(DateTime<Utc>),
}

impl Value {
    fn kind(&self) -> Option<Kind> {
        match self {
            Value::Null => None,
            Value::String(_) => Some(Kind::String),
            Value::Bool(_) => Some(Kind::Bool),
            Value::Int(_) => Some(Kind::Int),
            Value::Guid(_) => Some(Kind::Guid),
            Value::DateTime(_) => Some(Kind::DateTime),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    fn from_keyword(word: &str) -> Option<CmpOp> {
        [
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Gt,
            CmpOp::Ge,
            CmpOp::Lt,
            CmpOp::Le,
        ]
        .into_iter()
        .find(|op| op.keyword().eq_ignore_ascii_case(word))
    }

    fn keyword(self) -> &'static str {
        match self {
            CmpOp::Eq => "eq",
            CmpOp::Ne => "ne",
            CmpOp::Gt => "gt",
            CmpOp::Ge => "ge",
            CmpOp::Lt => "lt",
            CmpOp::Le => "le",
        }
    }

    fn sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "<>",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    /// The operator that holds exactly when `self` does not, for two
    /// non-null operands.
    fn complement(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering.is_eq(),
            CmpOp::Ne => ordering.is_ne(),
            CmpOp::Gt => ordering.is_gt(),
            CmpOp::Ge => ordering.is_ge(),
            CmpOp::Lt => ordering.is_lt(),
            CmpOp::Le => ordering.is_le(),
        }
    }
}

/// A parsed, type-checked filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    /// `value` is already type-checked and normalised for the property.
    Compare {
        property: Property,
        op: CmpOp,
        value: Value,
    },
    /// Never matches an absent value; `parse` rejects `null` in the list.
    In {
        property: Property,
        values: Vec<Value>,
    },
    StartsWith {
        property: Property,
        prefix: String,
    },
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    Comma,
    Str(String),
    /// Keywords, property names and function names; told apart by the parser
    /// because all of them are case-insensitive words.
    Word(String),
    /// Kept as text so an out-of-range value is reported against the
    /// property it is compared with, not at lexing time.
    Int(String),
    Guid(Uuid),
    Time {
        value: DateTime<Utc>,
        date_only: bool,
    },
    /// A lexing error. Lexing stops here; the parser reports it only when it
    /// reaches it, so errors always come out in left-to-right order.
    Bad(String),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Character offset of the token's first character.
    pos: usize,
    /// The token as the user wrote it, for messages.
    text: String,
}

impl Token {
    fn is_word(&self, keyword: &str) -> bool {
        matches!(&self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn describe(&self) -> String {
        match &self.tok {
            Tok::End => "end of input".to_owned(),
            Tok::Str(_) => format!("the string {}", shorten(&self.text)),
            _ => format!("'{}'", shorten(&self.text)),
        }
    }
}

/// Keeps user text quoted in messages short, so a 4 KiB token does not make
/// a 4 KiB error message.
fn shorten(text: &str) -> String {
    const LIMIT: usize = 40;
    if text.chars().count() <= LIMIT {
        text.to_owned()
    } else {
        let mut short: String = text.chars().take(LIMIT).collect();
        short.push('…');
        short
    }
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'')
}

fn lex(chars: &[char]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '\'' => match lex_string(chars, &mut i) {
                Ok(value) => Tok::Str(value),
                Err((pos, message)) => {
                    tokens.push(Token {
                        tok: Tok::Bad(message),
                        pos,
                        text: String::new(),
                    });
                    return tokens;
                }
            },
            _ => {
                // Literals like `2021-10-01`, `-5`, GUIDs and date-times with
                // `+02:00` contain no delimiter, so a whole run between
                // delimiters is taken first and classified afterwards. This
                // is what keeps `2021-10-01` from lexing as `2021 - 10 - 01`
                // and `12345678-...` from lexing as an integer.
                while chars.get(i).is_some_and(|&c| !is_delimiter(c)) {
                    i += 1;
                }
                classify(&chars[start..i].iter().collect::<String>())
            }
        };
        let bad = matches!(tok, Tok::Bad(_));
        tokens.push(Token {
            tok,
            pos: start,
            text: chars[start..i].iter().collect(),
        });
        if bad {
            return tokens;
        }
    }
    tokens.push(Token {
        tok: Tok::End,
        pos: chars.len(),
        text: String::new(),
    });
    tokens
}

/// Reads a quoted string starting at the opening quote; `''` is a quote.
fn lex_string(chars: &[char], i: &mut usize) -> Result<String, (usize, String)> {
    let open = *i;
    *i += 1;
    let mut value = String::new();
    loop {
        match chars.get(*i) {
            None => return Err((open, "unterminated string literal".to_owned())),
            Some('\'') if chars.get(*i + 1) == Some(&'\'') => {
                value.push('\'');
                *i += 2;
            }
            Some('\'') => {
                *i += 1;
                return Ok(value);
            }
            // PostgreSQL text cannot hold NUL, so such a value could only
            // fail at execution time; reject it here with a position instead.
            Some('\0') => {
                return Err((
                    *i,
                    "string literals cannot contain the NUL character".to_owned(),
                ));
            }
            Some(&c) => {
                value.push(c);
                *i += 1;
            }
        }
    }
}

fn classify(atom: &str) -> Tok {
    if let Some(guid) = parse_guid(atom) {
        return Tok::Guid(guid);
    }
    if has_date_prefix(atom) {
        return classify_time(atom);
    }
    let digits = atom.strip_prefix('-').unwrap_or(atom);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Tok::Int(atom.to_owned());
    }
    let mut chars = atom.chars();
    let identifier = chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '/');
    if identifier {
        return Tok::Word(atom.to_owned());
    }
    Tok::Bad(format!("unrecognised token '{}'", shorten(atom)))
}

/// Only the 8-4-4-4-12 form: `Uuid::try_parse` alone would also take the
/// braced, URN and 32-digit forms, which the grammar does not have.
fn parse_guid(text: &str) -> Option<Uuid> {
    let bytes = text.as_bytes();
    let shaped = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if shaped {
        Uuid::try_parse(text).ok()
    } else {
        None
    }
}

fn has_date_prefix(text: &str) -> bool {
    text.as_bytes().get(..10).is_some_and(|head| {
        head.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
    })
}

fn classify_time(atom: &str) -> Tok {
    if atom.len() == 10 {
        return match NaiveDate::parse_from_str(atom, "%Y-%m-%d") {
            Ok(date) => Tok::Time {
                value: date.and_time(NaiveTime::MIN).and_utc(),
                date_only: true,
            },
            Err(_) => Tok::Bad(format!("invalid date '{atom}'")),
        };
    }
    let invalid = || {
        Tok::Bad(format!(
            "invalid date-time '{}' (expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM)",
            shorten(atom)
        ))
    };
    let Ok(parsed) = DateTime::parse_from_rfc3339(atom) else {
        return invalid();
    };
    let value = parsed.with_timezone(&Utc);
    // chrono represents a leap second as nanosecond >= 1e9, which neither
    // PostgreSQL nor ordinary comparison treat the way a user would expect.
    if value.nanosecond() >= 1_000_000_000 {
        return Tok::Bad(format!(
            "invalid date-time '{}': leap seconds are not supported",
            shorten(atom)
        ));
    }
    // Keeps printing canonical (RFC 3339 has four-digit years only) after an
    // offset moves a value across year 0000 or 9999.
    if !(0..=9999).contains(&chrono::Datelike::year(&value)) {
        return Tok::Bad(format!(
            "date-time '{}' is outside years 0000 to 9999 in UTC",
            shorten(atom)
        ));
    }
    // PostgreSQL stores microseconds and the driver truncates anything finer
    // when sending; truncating here too keeps `matches` and SQL comparing the
    // same instant (Graph commonly sends 7 fractional digits).
    match value.with_nanosecond(value.nanosecond() / 1_000 * 1_000) {
        Some(value) => Tok::Time {
            value,
            date_only: false,
        },
        None => invalid(),
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parses a `$filter`. Empty or whitespace-only input means "no filter".
pub fn parse(input: &str) -> Result<Option<Expr>, FilterError> {
    if input.len() > MAX_FILTER_BYTES {
        // The character that crosses the limit: 4096 for ASCII input, and
        // never past the end for multi-byte input.
        let position = input
            .char_indices()
            .position(|(at, c)| at + c.len_utf8() > MAX_FILTER_BYTES)
            .unwrap_or(MAX_FILTER_BYTES);
        return Err(FilterError::new(
            position,
            format!("filter is longer than {MAX_FILTER_BYTES} bytes"),
        ));
    }
    let chars: Vec<char> = input.chars().collect();
    let mut parser = Parser {
        tokens: lex(&chars),
        next: 0,
        end: Token {
            tok: Tok::End,
            pos: chars.len(),
            text: String::new(),
        },
        depth: 0,
        terms: 0,
    };
    if parser.peek()?.tok == Tok::End {
        return Ok(None);
    }
    let expr = parser.or_expr()?;
    let rest = parser.peek()?;
    match rest.tok {
        Tok::End => Ok(Some(expr)),
        Tok::RParen => Err(FilterError::new(rest.pos, "unexpected ')'")),
        _ => Err(FilterError::new(
            rest.pos,
            format!(
                "expected 'and', 'or' or the end of the filter, found {}",
                rest.describe()
            ),
        )),
    }
}

/// Literal as written, before it is checked against a property.
#[derive(Debug)]
enum Lit {
    Null,
    Str(String),
    Bool(bool),
    Int(String),
    Guid(Uuid),
    Time(DateTime<Utc>, bool),
}

impl Lit {
    fn describe(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Str(_) => "a string",
            Lit::Bool(_) => "a boolean",
            Lit::Int(_) => "an integer",
            Lit::Guid(_) => "a GUID",
            Lit::Time(_, true) => "a date",
            Lit::Time(_, false) => "a date-time",
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    end: Token,
    depth: usize,
    terms: usize,
}

impl Parser {
    fn peek(&self) -> Result<&Token, FilterError> {
        let token = self.tokens.get(self.next).unwrap_or(&self.end);
        match &token.tok {
            Tok::Bad(message) => Err(FilterError::new(token.pos, message.clone())),
            _ => Ok(token),
        }
    }

    fn bump(&mut self) -> Result<Token, FilterError> {
        let token = self.peek()?.clone();
        if token.tok != Tok::End {
            self.next += 1;
        }
        Ok(token)
    }

    fn expect(&mut self, tok: Tok, what: &str) -> Result<Token, FilterError> {
        let token = self.bump()?;
        if token.tok == tok {
            Ok(token)
        } else {
            Err(FilterError::new(
                token.pos,
                format!("expected {what}, found {}", token.describe()),
            ))
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(FilterError::new(
                pos,
                format!("filter nests deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn count_term(&mut self, pos: usize) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(FilterError::new(
                pos,
                format!("filter has more than {MAX_TERMS} terms"),
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.and_expr()?;
        while self.peek()?.is_word("or") {
            self.bump()?;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, FilterError> {
        let mut left = self.unary()?;
        while self.peek()?.is_word("and") {
            self.bump()?;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        let token = self.peek()?;
        if token.is_word("not") {
            let pos = token.pos;
            self.enter(pos)?;
            self.bump()?;
            let inner = self.unary()?;
            self.leave();
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let after = match self.next.checked_sub(1).and_then(|i| self.tokens.get(i)) {
            Some(previous) => format!(" after '{}'", shorten(&previous.text)),
            None => String::new(),
        };
        let token = self.bump()?;
        match &token.tok {
            Tok::LParen => {
                self.enter(token.pos)?;
                let inner = self.or_expr()?;
                self.expect(
                    Tok::RParen,
                    &format!("')' to close the '(' at position {}", token.pos),
                )?;
                self.leave();
                Ok(inner)
            }
            Tok::Word(word) if word.eq_ignore_ascii_case("startswith") => self.startswith(&token),
            Tok::Word(word) => {
                if let Some(property) = Property::parse(word) {
                    return self.comparison(property, &token);
                }
                // Looked at without `peek` so a lexing error further on does
                // not hide this, earlier, problem.
                let call = matches!(
                    self.tokens.get(self.next).map(|t| &t.tok),
                    Some(Tok::LParen)
                );
                let message = if call {
                    format!(
                        "unsupported function '{}'; only startswith is supported",
                        shorten(word)
                    )
                } else {
                    format!("unknown property '{}'", shorten(word))
                };
                Err(FilterError::new(token.pos, message))
            }
            _ => Err(FilterError::new(
                token.pos,
                format!("expected a condition{after}, found {}", token.describe()),
            )),
        }
    }

    fn comparison(&mut self, property: Property, name: &Token) -> Result<Expr, FilterError> {
        self.count_term(name.pos)?;
        let op_token = self.bump()?;
        if op_token.is_word("in") {
            return self.in_list(property, &op_token);
        }
        let op = match &op_token.tok {
            Tok::Word(word) => CmpOp::from_keyword(word),
            _ => None,
        };
        let Some(op) = op else {
            return Err(FilterError::new(
                op_token.pos,
                format!(
                    "expected a comparison operator (eq, ne, gt, ge, lt, le, in) after '{}', found {}",
                    shorten(&name.text),
                    op_token.describe()
                ),
            ));
        };
        if property.kind() == Kind::Bool && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(FilterError::new(
                op_token.pos,
                format!(
                    "property '{}' is a boolean and supports only eq, ne and in, not '{}'",
                    property.name(),
                    op_token.text
                ),
            ));
        }
        let value_token = self.bump()?;
        let literal = literal(&value_token, &op_token)?;
        if matches!(literal, Lit::Null) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
            return Err(FilterError::new(
                value_token.pos,
                format!(
                    "null can only be compared with eq or ne, not '{}'",
                    op_token.text
                ),
            ));
        }
        let value = check(property, literal, value_token.pos)?;
        Ok(Expr::Compare {
            property,
            op,
            value,
        })
    }

    fn in_list(&mut self, property: Property, in_token: &Token) -> Result<Expr, FilterError> {
        let mut after = self.expect(
            Tok::LParen,
            &format!("'(' after '{}'", shorten(&in_token.text)),
        )?;
        let mut values = Vec::new();
        loop {
            let token = self.bump()?;
            let literal = literal(&token, &after)?;
            if matches!(literal, Lit::Null) {
                return Err(FilterError::new(
                    token.pos,
                    "null is not allowed in an 'in' list; use 'eq null'",
                ));
            }
            values.push(check(property, literal, token.pos)?);
            let separator = self.bump()?;
            match separator.tok {
                Tok::Comma => after = separator,
                Tok::RParen => return Ok(Expr::In { property, values }),
                _ => {
                    return Err(FilterError::new(
                        separator.pos,
                        format!(
                            "expected ',' or ')' in the 'in' list, found {}",
                            separator.describe()
                        ),
                    ));
                }
            }
        }
    }

    fn startswith(&mut self, name: &Token) -> Result<Expr, FilterError> {
        self.count_term(name.pos)?;
        self.enter(name.pos)?;
        self.expect(Tok::LParen, &format!("'(' after '{}'", name.text))?;
        let argument = self.bump()?;
        let property = match &argument.tok {
            Tok::Word(word) => Property::parse(word).ok_or_else(|| {
                FilterError::new(
                    argument.pos,
                    format!("unknown property '{}'", shorten(word)),
                )
            })?,
            _ => {
                return Err(FilterError::new(
                    argument.pos,
                    format!(
                        "expected a property name as the first argument of startswith, found {}",
                        argument.describe()
                    ),
                ));
            }
        };
        if property.kind() != Kind::String {
            return Err(FilterError::new(
                argument.pos,
                format!(
                    "startswith needs a string property, but '{}' expects {}",
                    property.name(),
                    expected(property.kind())
                ),
            ));
        }
        self.expect(Tok::Comma, "',' after the property name in startswith")?;
        let prefix_token = self.bump()?;
        let Tok::Str(prefix) = prefix_token.tok else {
            return Err(FilterError::new(
                prefix_token.pos,
                format!(
                    "startswith expects a string as its second argument, found {}",
                    prefix_token.describe()
                ),
            ));
        };
        self.expect(Tok::RParen, "')' to close startswith")?;
        self.leave();
        Ok(Expr::StartsWith {
            property,
            prefix: normalise(property, prefix),
        })
    }
}

fn literal(token: &Token, after: &Token) -> Result<Lit, FilterError> {
    let found = |hint: &str| {
        FilterError::new(
            token.pos,
            format!(
                "expected a value after '{}', found {}{hint}",
                shorten(&after.text),
                token.describe()
            ),
        )
    };
    Ok(match &token.tok {
        Tok::Str(s) => Lit::Str(s.clone()),
        Tok::Int(text) => Lit::Int(text.clone()),
        Tok::Guid(guid) => Lit::Guid(*guid),
        Tok::Time { value, date_only } => Lit::Time(*value, *date_only),
        Tok::Word(w) if w.eq_ignore_ascii_case("null") => Lit::Null,
        Tok::Word(w) if w.eq_ignore_ascii_case("true") => Lit::Bool(true),
        Tok::Word(w) if w.eq_ignore_ascii_case("false") => Lit::Bool(false),
        Tok::Word(_) => return Err(found(" (string values need single quotes)")),
        _ => return Err(found("")),
    })
}

/// Type-checks a literal against a property and normalises it.
fn check(property: Property, literal: Lit, pos: usize) -> Result<Value, FilterError> {
    let kind = property.kind();
    match (kind, literal) {
        (_, Lit::Null) => Ok(Value::Null),
        (Kind::Guid, Lit::Guid(guid)) => Ok(Value::Guid(guid)),
        (Kind::Guid, Lit::Str(text)) => parse_guid(&text).map(Value::Guid).ok_or_else(|| {
            FilterError::new(
                pos,
                format!(
                    "property '{}' expects a GUID, found a string that is not a GUID",
                    property.name()
                ),
            )
        }),
        (Kind::String, Lit::Str(text)) => Ok(Value::String(normalise(property, text))),
        // Graph users write appId and similar GUID-valued strings unquoted;
        // `Uuid`'s Display is the lowercase hyphenated form.
        (Kind::String, Lit::Guid(guid)) => Ok(Value::String(guid.to_string())),
        (Kind::Bool, Lit::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Int, Lit::Int(text)) => text.parse::<i32>().map(Value::Int).map_err(|_| {
            FilterError::new(
                pos,
                format!(
                    "integer {} does not fit in a 32-bit signed integer",
                    shorten(&text)
                ),
            )
        }),
        (Kind::DateTime, Lit::Time(value, _)) => Ok(Value::DateTime(value)),
        (_, other) => Err(FilterError::new(
            pos,
            format!(
                "property '{}' expects {}, found {}",
                property.name(),
                expected(kind),
                other.describe()
            ),
        )),
    }
}

/// userPrincipalName is stored lowercase, so lowercasing the literal makes
/// comparisons with it case-insensitive on purpose.
fn normalise(property: Property, text: String) -> String {
    if property == Property::UserPrincipalName {
        text.to_lowercase()
    } else {
        text
    }
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// One sign-in as seen by [`matches()`].
pub trait Row {
    /// [`Value::Null`] when the property is absent.
    fn get(&self, property: Property) -> Value;
}

/// Evaluates `expr` against one row with OData semantics.
///
/// This is the contract [`to_sql()`] is held to: a row satisfies the SQL
/// condition exactly when `matches` is true. Strings are ordered byte-wise
/// (Rust's `String` order); PostgreSQL orders by the column's collation, and
/// the service's text columns use `COLLATE "C"`, which orders UTF-8 byte-wise,
/// so the two agree. GUIDs are ordered by their bytes, as PostgreSQL's `uuid`
/// type is. A value whose kind differs from the literal's (which `parse`
/// never produces) is never equal to it and never ordered against it.
pub fn matches(expr: &Expr, row: &dyn Row) -> bool {
    match expr {
        Expr::And(a, b) => matches(a, row) && matches(b, row),
        Expr::Or(a, b) => matches(a, row) || matches(b, row),
        Expr::Not(inner) => !matches(inner, row),
        Expr::Compare {
            property,
            op,
            value,
        } => compare(&row.get(*property), *op, value),
        Expr::In { property, values } => {
            let actual = row.get(*property);
            values
                .iter()
                .any(|v| *v != Value::Null && compare(&actual, CmpOp::Eq, v))
        }
        Expr::StartsWith { property, prefix } => {
            matches!(row.get(*property), Value::String(s) if s.starts_with(prefix.as_str()))
        }
    }
}

fn compare(actual: &Value, op: CmpOp, literal: &Value) -> bool {
    match (actual, literal) {
        (_, Value::Null) => match op {
            CmpOp::Eq => *actual == Value::Null,
            CmpOp::Ne => *actual != Value::Null,
            _ => false,
        },
        (Value::Null, _) => op == CmpOp::Ne,
        _ => match order(actual, literal) {
            Some(ordering) => op.holds(ordering),
            None => op == CmpOp::Ne,
        },
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::String(a), Value::String(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        (Value::Int(a), Value::Int(b)) => Some(a.cmp(b)),
        (Value::Guid(a), Value::Guid(b)) => Some(a.as_bytes().cmp(b.as_bytes())),
        (Value::DateTime(a), Value::DateTime(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Negation normal form
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Leaf<'a> {
    Compare {
        property: Property,
        op: CmpOp,
        value: &'a Value,
    },
    In {
        property: Property,
        values: &'a [Value],
    },
    StartsWith {
        property: Property,
        prefix: &'a str,
    },
}

/// An expression with every `not` pushed down to a leaf. `eq`/`ne` leaves
/// are never negated: `not (p eq v)` is exactly `p ne v` under OData null
/// semantics (both are true for an absent value), and the other way round.
#[derive(Debug)]
enum Nnf<'a> {
    And(Box<Nnf<'a>>, Box<Nnf<'a>>),
    Or(Box<Nnf<'a>>, Box<Nnf<'a>>),
    Leaf { leaf: Leaf<'a>, negated: bool },
}

fn nnf(expr: &Expr, negated: bool) -> Nnf<'_> {
    match expr {
        Expr::And(a, b) | Expr::Or(a, b) => {
            let a = Box::new(nnf(a, negated));
            let b = Box::new(nnf(b, negated));
            // De Morgan: negation swaps the connective.
            if matches!(expr, Expr::And(..)) != negated {
                Nnf::And(a, b)
            } else {
                Nnf::Or(a, b)
            }
        }
        Expr::Not(inner) => nnf(inner, !negated),
        Expr::Compare {
            property,
            op,
            value,
        } => {
            let (op, negated) = match (op, negated) {
                (CmpOp::Eq | CmpOp::Ne, true) => (op.complement(), false),
                _ => (*op, negated),
            };
            Nnf::Leaf {
                leaf: Leaf::Compare {
                    property: *property,
                    op,
                    value,
                },
                negated,
            }
        }
        Expr::In { property, values } => Nnf::Leaf {
            leaf: Leaf::In {
                property: *property,
                values,
            },
            negated,
        },
        Expr::StartsWith { property, prefix } => Nnf::Leaf {
            leaf: Leaf::StartsWith {
                property: *property,
                prefix,
            },
            negated,
        },
    }
}

// ---------------------------------------------------------------------------
// SQL
// ---------------------------------------------------------------------------

/// A SQL parameter value. Implements [`ToSql`] by delegating to the inner
/// value.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    Text(String),
    Int(i32),
    Bool(bool),
    Uuid(Uuid),
    Time(DateTime<Utc>),
    TextArray(Vec<String>),
    UuidArray(Vec<Uuid>),
    IntArray(Vec<i32>),
}

impl SqlValue {
    /// The PostgreSQL type this value is sent as, for statements sent with their parameter
    /// types (one round trip, no prepare).
    pub fn sql_type(&self) -> Type {
        match self {
            SqlValue::Text(_) => Type::TEXT,
            SqlValue::Int(_) => Type::INT4,
            SqlValue::Bool(_) => Type::BOOL,
            SqlValue::Uuid(_) => Type::UUID,
            SqlValue::Time(_) => Type::TIMESTAMPTZ,
            SqlValue::TextArray(_) => Type::TEXT_ARRAY,
            SqlValue::UuidArray(_) => Type::UUID_ARRAY,
            SqlValue::IntArray(_) => Type::INT4_ARRAY,
        }
    }
}

impl ToSql for SqlValue {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // `accepts` below can only say whether *some* variant takes `ty`, so
        // each variant checks its own type here and reports a WrongType
        // error instead of writing bytes the server would misread.
        match self {
            SqlValue::Text(v) => v.to_sql_checked(ty, out),
            SqlValue::Int(v) => v.to_sql_checked(ty, out),
            SqlValue::Bool(v) => v.to_sql_checked(ty, out),
            SqlValue::Uuid(v) => v.to_sql_checked(ty, out),
            SqlValue::Time(v) => v.to_sql_checked(ty, out),
            SqlValue::TextArray(v) => v.to_sql_checked(ty, out),
            SqlValue::UuidArray(v) => v.to_sql_checked(ty, out),
            SqlValue::IntArray(v) => v.to_sql_checked(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <String as ToSql>::accepts(ty)
            || <i32 as ToSql>::accepts(ty)
            || <bool as ToSql>::accepts(ty)
            || <Uuid as ToSql>::accepts(ty)
            || <DateTime<Utc> as ToSql>::accepts(ty)
            || <Vec<String> as ToSql>::accepts(ty)
            || <Vec<Uuid> as ToSql>::accepts(ty)
            || <Vec<i32> as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// A SQL condition before rendering; kept structured so tests can evaluate
/// it with SQL's three-valued logic.
#[derive(Debug, Clone, PartialEq)]
enum Cond {
    Const(bool),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    IsNull(Property),
    IsNotNull(Property),
    /// `col <op> $n`
    Cmp(Property, CmpOp, usize),
    /// `col IS DISTINCT FROM $n`
    DistinctFrom(Property, usize),
    /// `col = ANY($n)`
    AnyEq(Property, usize),
    /// `col <> ALL($n)`
    AllNe(Property, usize),
    /// `col LIKE $n`
    Like(Property, usize),
    /// `col NOT LIKE $n`
    NotLike(Property, usize),
    /// `col` (true) or `NOT col` (false): a boolean in the statement's shape rather than a
    /// parameter, so that a cached generic plan can still use the partial indexes on
    /// `flagged_for_review` (a partial index needs its predicate implied by the query text).
    Is(Property, bool),
    /// `col IS NOT TRUE` / `col IS NOT FALSE`: also true for an absent value.
    IsNot(Property, bool),
}

/// Appends `expr` as a SQL boolean condition over the sign-in columns. Every
/// value becomes a `$n` placeholder numbered after the parameters already in
/// `params` (the first is `$(params.len() + 1)`).
///
/// The condition is TRUE exactly for the rows [`matches()`] accepts, and FALSE
/// or NULL for the others; NULL acts as FALSE in `WHERE` and under
/// `AND`/`OR`, but the fragment must never be negated in SQL (`NOT (...)`).
/// `not` in the filter is pushed down to the leaves instead, where each
/// negated form is written so it is never NULL (e.g. `col IS DISTINCT FROM
/// $n`, `(col IS NULL OR col <= $n)`), and the positive forms stay plain
/// btree-indexable comparisons.
///
/// Expressions from [`parse()`] are type-checked. For hand-built ones, a value
/// whose kind does not match its property's is treated as [`matches()`] treats
/// it (never equal, never ordered), which becomes a `TRUE`/`FALSE` constant.
/// Recursion follows the expression's depth, which [`parse()`] bounds.
pub fn to_sql(expr: &Expr, params: &mut Vec<SqlValue>) -> String {
    translate(expr, params).sql
}

/// A filter as SQL ([`to_sql()`]), and how it is best planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub sql: String,
    /// True when a btree index returns every row the filter admits in the page order
    /// (`created_at`, `id`), so the plan that walks it in that order and stops at the page size
    /// is the right one whatever the values: the filter is a conjunction of time bounds,
    /// booleans (the flagged partial indexes, or a filter on a common value) and equality on
    /// `userId` or `userPrincipalName` (each has an index by tenant, value and time).
    ///
    /// Such statements are prepared and their plan reused (`store`): planning a read of every
    /// daily partition costs several times what running it does. Any other filter's best plan
    /// depends on how rare its values are (a GIN lookup and a sort for a rare one, the time
    /// order for a common one), which only a plan made for the values can know.
    pub reads_in_time_order: bool,
}

/// [`to_sql()`] and [`Translated::reads_in_time_order`] from one lowering of `expr`.
pub fn translate(expr: &Expr, params: &mut Vec<SqlValue>) -> Translated {
    fn ordered(cond: &Cond) -> bool {
        match cond {
            Cond::Const(_) | Cond::Is(..) | Cond::IsNot(..) => true,
            Cond::Cmp(Property::CreatedDateTime, _, _) => true,
            Cond::Cmp(Property::UserId | Property::UserPrincipalName, CmpOp::Eq, _) => true,
            Cond::And(parts) => parts.iter().all(ordered),
            _ => false,
        }
    }
    let cond = lower(&nnf(expr, false), params);
    Translated {
        sql: render(&cond),
        reads_in_time_order: ordered(&cond),
    }
}

fn lower(node: &Nnf<'_>, params: &mut Vec<SqlValue>) -> Cond {
    match node {
        Nnf::And(a, b) => {
            let a = lower(a, params);
            let b = lower(b, params);
            join(true, a, b)
        }
        Nnf::Or(a, b) => {
            let a = lower(a, params);
            let b = lower(b, params);
            join(false, a, b)
        }
        Nnf::Leaf { leaf, negated } => match *leaf {
            Leaf::Compare {
                property,
                op,
                value,
            } => lower_compare(property, op, value, *negated, params),
            Leaf::In { property, values } => lower_in(property, values, *negated, params),
            Leaf::StartsWith { property, prefix } => {
                if property.kind() != Kind::String {
                    return Cond::Const(*negated);
                }
                let n = push(params, SqlValue::Text(like_prefix(prefix)));
                if *negated {
                    Cond::Or(vec![Cond::IsNull(property), Cond::NotLike(property, n)])
                } else {
                    Cond::Like(property, n)
                }
            }
        },
    }
}

/// Flattens chains so `a and b and c` renders as `(a AND b AND c)`.
fn join(and: bool, a: Cond, b: Cond) -> Cond {
    let mut parts = Vec::new();
    for cond in [a, b] {
        match cond {
            Cond::And(inner) if and => parts.extend(inner),
            Cond::Or(inner) if !and => parts.extend(inner),
            other => parts.push(other),
        }
    }
    if and {
        Cond::And(parts)
    } else {
        Cond::Or(parts)
    }
}

fn push(params: &mut Vec<SqlValue>, value: SqlValue) -> usize {
    params.push(value);
    params.len()
}

fn scalar(value: &Value) -> Option<SqlValue> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(SqlValue::Text(s.clone())),
        Value::Bool(b) => Some(SqlValue::Bool(*b)),
        Value::Int(i) => Some(SqlValue::Int(*i)),
        Value::Guid(g) => Some(SqlValue::Uuid(*g)),
        Value::DateTime(t) => Some(SqlValue::Time(*t)),
    }
}

fn lower_compare(
    property: Property,
    op: CmpOp,
    value: &Value,
    negated: bool,
    params: &mut Vec<SqlValue>,
) -> Cond {
    if *value == Value::Null {
        return match (op, negated) {
            (CmpOp::Eq, false) | (CmpOp::Ne, true) => Cond::IsNull(property),
            (CmpOp::Ne, false) | (CmpOp::Eq, true) => Cond::IsNotNull(property),
            // An ordering against null is false for every row.
            _ => Cond::Const(negated),
        };
    }
    if let (Value::Bool(b), Kind::Bool) = (value, property.kind()) {
        return match (op, negated) {
            (CmpOp::Eq, false) | (CmpOp::Ne, true) => Cond::Is(property, *b),
            (CmpOp::Ne, false) | (CmpOp::Eq, true) => Cond::IsNot(property, *b),
            // Booleans are not ordered: the parser refuses anything but eq and ne.
            _ => Cond::Const(negated),
        };
    }
    let param = match scalar(value) {
        Some(param) if value.kind() == Some(property.kind()) => param,
        // Never equal, never ordered (see `matches`).
        _ => return Cond::Const((op == CmpOp::Ne) != negated),
    };
    let n = push(params, param);
    match (op, negated) {
        (CmpOp::Eq, false) | (CmpOp::Ne, true) => Cond::Cmp(property, CmpOp::Eq, n),
        // OData's `ne` is true for an absent value; `<>` would be NULL.
        (CmpOp::Ne, false) | (CmpOp::Eq, true) => Cond::DistinctFrom(property, n),
        (op, false) => Cond::Cmp(property, op, n),
        // Two-valued negation of an ordering: absent values satisfy it.
        (op, true) => Cond::Or(vec![
            Cond::IsNull(property),
            Cond::Cmp(property, op.complement(), n),
        ]),
    }
}

fn lower_in(
    property: Property,
    values: &[Value],
    negated: bool,
    params: &mut Vec<SqlValue>,
) -> Cond {
    let kind = property.kind();
    // Values of another kind (and nulls) can never equal the column, so
    // dropping them keeps the meaning `matches` gives them.
    let fitting: Vec<&Value> = values.iter().filter(|v| v.kind() == Some(kind)).collect();
    if fitting.is_empty() {
        return Cond::Const(negated);
    }
    let array = match kind {
        Kind::String => Some(SqlValue::TextArray(
            fitting
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
        )),
        Kind::Guid => Some(SqlValue::UuidArray(
            fitting
                .iter()
                .filter_map(|v| match v {
                    Value::Guid(g) => Some(*g),
                    _ => None,
                })
                .collect(),
        )),
        Kind::Int => Some(SqlValue::IntArray(
            fitting
                .iter()
                .filter_map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect(),
        )),
        // SqlValue has no bool or timestamptz arrays; these lists are short
        // in practice, so they become a disjunction of equalities.
        Kind::Bool | Kind::DateTime => None,
    };
    if let Some(array) = array {
        let n = push(params, array);
        return if negated {
            Cond::Or(vec![Cond::IsNull(property), Cond::AllNe(property, n)])
        } else {
            Cond::AnyEq(property, n)
        };
    }
    if kind == Kind::Bool {
        let parts = fitting
            .into_iter()
            .filter_map(|value| match value {
                Value::Bool(b) if negated => Some(Cond::IsNot(property, *b)),
                Value::Bool(b) => Some(Cond::Is(property, *b)),
                _ => None,
            })
            .collect();
        return if negated {
            Cond::And(parts)
        } else {
            Cond::Or(parts)
        };
    }
    let parts = fitting
        .into_iter()
        .filter_map(scalar)
        .map(|param| {
            let n = push(params, param);
            if negated {
                Cond::DistinctFrom(property, n)
            } else {
                Cond::Cmp(property, CmpOp::Eq, n)
            }
        })
        .collect();
    if negated {
        Cond::And(parts)
    } else {
        Cond::Or(parts)
    }
}

/// PostgreSQL's default LIKE escape character is the backslash.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn render(cond: &Cond) -> String {
    match cond {
        Cond::Const(true) => "TRUE".to_owned(),
        Cond::Const(false) => "FALSE".to_owned(),
        Cond::And(parts) => render_list(parts, " AND ", "TRUE"),
        Cond::Or(parts) => render_list(parts, " OR ", "FALSE"),
        Cond::IsNull(p) => format!("{} IS NULL", p.column()),
        Cond::IsNotNull(p) => format!("{} IS NOT NULL", p.column()),
        Cond::Cmp(p, op, n) => format!("{} {} ${n}", p.column(), op.sql()),
        Cond::DistinctFrom(p, n) => format!("{} IS DISTINCT FROM ${n}", p.column()),
        Cond::AnyEq(p, n) => format!("{} = ANY(${n})", p.column()),
        Cond::AllNe(p, n) => format!("{} <> ALL(${n})", p.column()),
        Cond::Like(p, n) => format!("{} LIKE ${n}", p.column()),
        Cond::NotLike(p, n) => format!("{} NOT LIKE ${n}", p.column()),
        Cond::Is(p, true) => p.column().to_owned(),
        Cond::Is(p, false) => format!("NOT {}", p.column()),
        Cond::IsNot(p, b) => format!(
            "{} IS NOT {}",
            p.column(),
            if *b { "TRUE" } else { "FALSE" }
        ),
    }
}

fn render_list(parts: &[Cond], separator: &str, empty: &str) -> String {
    match parts {
        [] => empty.to_owned(),
        [single] => render(single),
        _ => {
            let inner: Vec<String> = parts.iter().map(render).collect();
            format!("({})", inner.join(separator))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;
    use proptest::prelude::*;
    use proptest::sample::select;
    use proptest::strategy::Union;

    // -- helpers -------------------------------------------------------------

    #[derive(Debug, Clone)]
    struct TestRow(Vec<Value>);

    impl Row for TestRow {
        fn get(&self, property: Property) -> Value {
            Property::ALL
                .iter()
                .position(|p| *p == property)
                .and_then(|i| self.0.get(i))
                .cloned()
                .unwrap_or(Value::Null)
        }
    }

    fn row(pairs: &[(Property, Value)]) -> TestRow {
        TestRow(
            Property::ALL
                .iter()
                .map(|p| {
                    pairs
                        .iter()
                        .find(|(q, _)| q == p)
                        .map_or(Value::Null, |(_, v)| v.clone())
                })
                .collect(),
        )
    }

    fn parsed(input: &str) -> Expr {
        match parse(input) {
            Ok(Some(expr)) => expr,
            other => panic!("{input:?} should parse, got {other:?}"),
        }
    }

    fn sql(input: &str) -> (String, Vec<SqlValue>) {
        let mut params = Vec::new();
        let text = to_sql(&parsed(input), &mut params);
        (text, params)
    }

    fn error(input: &str) -> FilterError {
        match parse(input) {
            Err(e) => e,
            other => panic!("{input:?} should fail, got {other:?}"),
        }
    }

    fn assert_error(input: &str, position: usize, message: &str) {
        assert_eq!(
            error(input),
            FilterError::new(position, message),
            "input {input:?}"
        );
    }

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test date-time is valid")
            .with_timezone(&Utc)
    }

    fn text(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    fn cmp(property: Property, op: CmpOp, value: Value) -> Expr {
        Expr::Compare {
            property,
            op,
            value,
        }
    }

    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn quote(s: &str) -> String {
        format!("'{}'", s.replace('\'', "''"))
    }

    fn literal_text(value: &Value) -> String {
        match value {
            Value::Null => "null".to_owned(),
            Value::String(s) => quote(s),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Guid(g) => g.to_string(),
            Value::DateTime(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        }
    }

    /// Prints with the fewest parentheses that keep the tree's shape, so
    /// printing never nests deeper than the filter it came from.
    fn print(expr: &Expr) -> String {
        let wrap = |e: &Expr, bare: bool| {
            if bare {
                print(e)
            } else {
                format!("({})", print(e))
            }
        };
        match expr {
            Expr::And(a, b) => format!(
                "{} and {}",
                wrap(a, !matches!(**a, Expr::Or(..))),
                wrap(b, !matches!(**b, Expr::And(..) | Expr::Or(..)))
            ),
            Expr::Or(a, b) => format!("{} or {}", print(a), wrap(b, !matches!(**b, Expr::Or(..)))),
            Expr::Not(inner) => format!(
                "not {}",
                wrap(inner, !matches!(**inner, Expr::And(..) | Expr::Or(..)))
            ),
            Expr::Compare {
                property,
                op,
                value,
            } => format!(
                "{} {} {}",
                property.name(),
                op.keyword(),
                literal_text(value)
            ),
            Expr::In { property, values } => format!(
                "{} in ({})",
                property.name(),
                values
                    .iter()
                    .map(literal_text)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Expr::StartsWith { property, prefix } => {
                format!("startswith({}, {})", property.name(), quote(prefix))
            }
        }
    }

    impl Leaf<'_> {
        fn to_expr(self) -> Expr {
            match self {
                Leaf::Compare {
                    property,
                    op,
                    value,
                } => cmp(property, op, value.clone()),
                Leaf::In { property, values } => Expr::In {
                    property,
                    values: values.to_vec(),
                },
                Leaf::StartsWith { property, prefix } => Expr::StartsWith {
                    property,
                    prefix: prefix.to_owned(),
                },
            }
        }
    }

    impl Nnf<'_> {
        fn to_expr(&self) -> Expr {
            match self {
                Nnf::And(a, b) => and(a.to_expr(), b.to_expr()),
                Nnf::Or(a, b) => Expr::Or(Box::new(a.to_expr()), Box::new(b.to_expr())),
                Nnf::Leaf { leaf, negated } => {
                    let leaf = leaf.to_expr();
                    if *negated {
                        Expr::Not(Box::new(leaf))
                    } else {
                        leaf
                    }
                }
            }
        }
    }

    /// `not` only directly around a leaf, and never around eq/ne.
    fn is_nnf(expr: &Expr) -> bool {
        match expr {
            Expr::And(a, b) | Expr::Or(a, b) => is_nnf(a) && is_nnf(b),
            Expr::Not(inner) => match &**inner {
                Expr::Compare { op, .. } => !matches!(op, CmpOp::Eq | CmpOp::Ne),
                Expr::In { .. } | Expr::StartsWith { .. } => true,
                _ => false,
            },
            _ => true,
        }
    }

    /// PostgreSQL's comparison of a column value with a parameter, for the
    /// column types and collation the service uses ("C": byte-wise text;
    /// uuid: memcmp). Panics where PostgreSQL would raise a type error.
    fn pg_cmp(column: &Value, param: &SqlValue) -> Ordering {
        match (column, param) {
            (Value::String(a), SqlValue::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::Int(a), SqlValue::Int(b)) => a.cmp(b),
            (Value::Bool(a), SqlValue::Bool(b)) => a.cmp(b),
            (Value::Guid(a), SqlValue::Uuid(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Value::DateTime(a), SqlValue::Time(b)) => a.cmp(b),
            _ => panic!("type error: column value {column:?} against parameter {param:?}"),
        }
    }

    fn elements(param: &SqlValue) -> Vec<SqlValue> {
        match param {
            SqlValue::TextArray(v) => v.iter().cloned().map(SqlValue::Text).collect(),
            SqlValue::UuidArray(v) => v.iter().copied().map(SqlValue::Uuid).collect(),
            SqlValue::IntArray(v) => v.iter().copied().map(SqlValue::Int).collect(),
            other => panic!("not an array parameter: {other:?}"),
        }
    }

    fn like(s: &[char], pattern: &[char]) -> bool {
        match pattern.split_first() {
            None => s.is_empty(),
            Some(('%', rest)) => (0..=s.len()).any(|i| like(&s[i..], rest)),
            Some(('_', rest)) => !s.is_empty() && like(&s[1..], rest),
            Some(('\\', rest)) => match rest.split_first() {
                Some((c, rest)) => s.first() == Some(c) && like(&s[1..], rest),
                None => panic!("LIKE pattern ends with the escape character"),
            },
            Some((c, rest)) => s.first() == Some(c) && like(&s[1..], rest),
        }
    }

    /// Evaluates a condition with SQL's three-valued logic (None = NULL).
    fn eval(cond: &Cond, row: &TestRow, params: &[SqlValue]) -> Option<bool> {
        let param = |n: usize| params.get(n - 1).expect("placeholder has a parameter");
        let column = |p: Property| Some(row.get(p)).filter(|v| *v != Value::Null);
        match cond {
            Cond::Const(b) => Some(*b),
            // Kleene logic: a NULL operand must not short-circuit.
            Cond::And(parts) => {
                let results: Vec<_> = parts.iter().map(|c| eval(c, row, params)).collect();
                if results.contains(&Some(false)) {
                    Some(false)
                } else if results.iter().all(|r| *r == Some(true)) {
                    Some(true)
                } else {
                    None
                }
            }
            Cond::Or(parts) => {
                let results: Vec<_> = parts.iter().map(|c| eval(c, row, params)).collect();
                if results.contains(&Some(true)) {
                    Some(true)
                } else if results.iter().all(|r| *r == Some(false)) {
                    Some(false)
                } else {
                    None
                }
            }
            Cond::IsNull(p) => Some(column(*p).is_none()),
            Cond::Is(p, b) => column(*p).map(|v| v == Value::Bool(*b)),
            Cond::IsNot(p, b) => Some(column(*p) != Some(Value::Bool(*b))),
            Cond::IsNotNull(p) => Some(column(*p).is_some()),
            Cond::Cmp(p, op, n) => column(*p).map(|v| op.holds(pg_cmp(&v, param(*n)))),
            Cond::DistinctFrom(p, n) => {
                Some(column(*p).is_none_or(|v| pg_cmp(&v, param(*n)) != Ordering::Equal))
            }
            Cond::AnyEq(p, n) => {
                let items = elements(param(*n));
                if items.is_empty() {
                    return Some(false);
                }
                column(*p).map(|v| items.iter().any(|e| pg_cmp(&v, e) == Ordering::Equal))
            }
            Cond::AllNe(p, n) => {
                let items = elements(param(*n));
                if items.is_empty() {
                    return Some(true);
                }
                column(*p).map(|v| items.iter().all(|e| pg_cmp(&v, e) != Ordering::Equal))
            }
            Cond::Like(p, n) | Cond::NotLike(p, n) => {
                let SqlValue::Text(pattern) = param(*n) else {
                    panic!("LIKE needs a text parameter");
                };
                let result = column(*p).map(|v| {
                    let Value::String(s) = v else {
                        panic!("LIKE on a non-text column");
                    };
                    like(
                        &s.chars().collect::<Vec<_>>(),
                        &pattern.chars().collect::<Vec<_>>(),
                    )
                });
                if matches!(cond, Cond::NotLike(..)) {
                    result.map(|b| !b)
                } else {
                    result
                }
            }
        }
    }

    // -- product-document queries --------------------------------------------

    #[test]
    fn product_query_flagged() {
        assert_eq!(
            parsed("flaggedforReview eq true"),
            cmp(Property::FlaggedForReview, CmpOp::Eq, Value::Bool(true))
        );
        assert_eq!(
            sql("flaggedforReview eq true"),
            ("flagged_for_review".to_owned(), vec![])
        );
    }

    #[test]
    fn product_query_flagged_for_user() {
        let input = "flaggedforReview eq true and userPrincipalname eq 'user@contoso.com'";
        assert_eq!(
            parsed(input),
            and(
                cmp(Property::FlaggedForReview, CmpOp::Eq, Value::Bool(true)),
                cmp(
                    Property::UserPrincipalName,
                    CmpOp::Eq,
                    text("user@contoso.com")
                )
            )
        );
        assert_eq!(
            sql(input),
            (
                "(flagged_for_review AND user_principal_name = $1)".to_owned(),
                vec![SqlValue::Text("user@contoso.com".to_owned())]
            )
        );
    }

    #[test]
    fn product_query_flagged_since_for_user() {
        let input = "flaggedforReview eq true and createdDateTime ge 2021-10-01 and userPrincipalname eq 'user@contoso.com'";
        let since = utc("2021-10-01T00:00:00Z");
        assert_eq!(
            parsed(input),
            and(
                and(
                    cmp(Property::FlaggedForReview, CmpOp::Eq, Value::Bool(true)),
                    cmp(Property::CreatedDateTime, CmpOp::Ge, Value::DateTime(since))
                ),
                cmp(
                    Property::UserPrincipalName,
                    CmpOp::Eq,
                    text("user@contoso.com")
                )
            )
        );
        assert_eq!(
            sql(input),
            (
                "(flagged_for_review AND created_at >= $1 AND user_principal_name = $2)".to_owned(),
                vec![
                    SqlValue::Time(since),
                    SqlValue::Text("user@contoso.com".to_owned())
                ]
            )
        );
    }

    // -- Graph documentation filters -------------------------------------------

    #[test]
    fn graph_startswith() {
        assert_eq!(
            parsed("startswith(appDisplayName,'Azure')"),
            Expr::StartsWith {
                property: Property::AppDisplayName,
                prefix: "Azure".to_owned()
            }
        );
        assert_eq!(
            sql("startswith(appDisplayName,'Azure')"),
            (
                "app_display_name LIKE $1".to_owned(),
                vec![SqlValue::Text("Azure%".to_owned())]
            )
        );
    }

    #[test]
    fn graph_location() {
        assert_eq!(
            sql(
                "location/city eq 'Redmond' and location/state eq 'Washington' and location/countryOrRegion eq 'US'"
            ),
            (
                "(city = $1 AND state = $2 AND country_or_region = $3)".to_owned(),
                vec![
                    SqlValue::Text("Redmond".to_owned()),
                    SqlValue::Text("Washington".to_owned()),
                    SqlValue::Text("US".to_owned())
                ]
            )
        );
    }

    #[test]
    fn graph_conditional_access_status() {
        assert_eq!(
            sql("conditionalAccessStatus eq 'failure'"),
            (
                "conditional_access_status = $1".to_owned(),
                vec![SqlValue::Text("failure".to_owned())]
            )
        );
    }

    #[test]
    fn graph_time_window_and_app() {
        let input = "(createdDateTime ge 2024-01-13T14:13:32Z and createdDateTime le 2024-01-14T17:43:26Z) and appId eq 'de8bc8b5-d9f9-48b1-a8ad-b748da725064'";
        assert_eq!(
            sql(input),
            (
                "(created_at >= $1 AND created_at <= $2 AND app_id = $3)".to_owned(),
                vec![
                    SqlValue::Time(utc("2024-01-13T14:13:32Z")),
                    SqlValue::Time(utc("2024-01-14T17:43:26Z")),
                    SqlValue::Text("de8bc8b5-d9f9-48b1-a8ad-b748da725064".to_owned())
                ]
            )
        );
    }

    #[test]
    fn graph_error_code() {
        assert_eq!(
            sql("status/errorCode eq 50126"),
            ("error_code = $1".to_owned(), vec![SqlValue::Int(50126)])
        );
    }

    #[test]
    fn graph_startswith_upper_case_on_upn_lowercases_prefix() {
        assert_eq!(
            parsed("STARTSWITH(userPrincipalName, 'Adele')"),
            Expr::StartsWith {
                property: Property::UserPrincipalName,
                prefix: "adele".to_owned()
            }
        );
        assert_eq!(
            sql("STARTSWITH(userPrincipalName, 'Adele')"),
            (
                "user_principal_name LIKE $1".to_owned(),
                vec![SqlValue::Text("adele%".to_owned())]
            )
        );
    }

    #[test]
    fn graph_in() {
        assert_eq!(
            sql("userType in ('member','guest')"),
            (
                "user_type = ANY($1)".to_owned(),
                vec![SqlValue::TextArray(vec![
                    "member".to_owned(),
                    "guest".to_owned()
                ])]
            )
        );
    }

    #[test]
    fn graph_not() {
        assert_eq!(
            parsed("not (location/city eq 'Redmond')"),
            Expr::Not(Box::new(cmp(
                Property::LocationCity,
                CmpOp::Eq,
                text("Redmond")
            )))
        );
        assert_eq!(
            sql("not (location/city eq 'Redmond')"),
            (
                "city IS DISTINCT FROM $1".to_owned(),
                vec![SqlValue::Text("Redmond".to_owned())]
            )
        );
    }

    #[test]
    fn escaped_quote() {
        assert_eq!(
            parsed("userDisplayName eq 'O''Brien'"),
            cmp(Property::UserDisplayName, CmpOp::Eq, text("O'Brien"))
        );
        assert_eq!(
            parsed("userDisplayName eq ''''"),
            cmp(Property::UserDisplayName, CmpOp::Eq, text("'"))
        );
    }

    #[test]
    fn offset_is_normalised_to_utc() {
        assert_eq!(
            parsed("createdDateTime gt 2024-01-13T16:13:32.5+02:00"),
            cmp(
                Property::CreatedDateTime,
                CmpOp::Gt,
                Value::DateTime(utc("2024-01-13T14:13:32.5Z"))
            )
        );
        assert_eq!(
            parsed("createdDateTime lt 2024-01-13T00:00:00-05:30"),
            cmp(
                Property::CreatedDateTime,
                CmpOp::Lt,
                Value::DateTime(utc("2024-01-13T05:30:00Z"))
            )
        );
    }

    #[test]
    fn fraction_beyond_microseconds_is_truncated() {
        assert_eq!(
            parsed("createdDateTime ge 2024-01-13T14:13:32.1234567Z"),
            cmp(
                Property::CreatedDateTime,
                CmpOp::Ge,
                Value::DateTime(utc("2024-01-13T14:13:32.123456Z"))
            )
        );
    }

    // -- other translations ----------------------------------------------------

    #[test]
    fn null_and_negated_forms() {
        let cases: &[(&str, &str)] = &[
            ("userType eq null", "user_type IS NULL"),
            ("userType ne null", "user_type IS NOT NULL"),
            ("not (userType eq null)", "user_type IS NOT NULL"),
            ("not (userType ne null)", "user_type IS NULL"),
            ("userType ne 'x'", "user_type IS DISTINCT FROM $1"),
            ("not userType ne 'x'", "user_type = $1"),
            ("createdDateTime gt 2021-10-01", "created_at > $1"),
            (
                "not (createdDateTime gt 2021-10-01)",
                "(created_at IS NULL OR created_at <= $1)",
            ),
            (
                "not (createdDateTime ge 2021-10-01)",
                "(created_at IS NULL OR created_at < $1)",
            ),
            (
                "not (status/errorCode lt 0)",
                "(error_code IS NULL OR error_code >= $1)",
            ),
            (
                "not (status/errorCode le 0)",
                "(error_code IS NULL OR error_code > $1)",
            ),
            (
                "not (userType in ('member'))",
                "(user_type IS NULL OR user_type <> ALL($1))",
            ),
            (
                "not startswith(userType, 'm')",
                "(user_type IS NULL OR user_type NOT LIKE $1)",
            ),
            ("not not userType eq 'x'", "user_type = $1"),
            (
                "not (userType eq 'a' or userType eq 'b')",
                "(user_type IS DISTINCT FROM $1 AND user_type IS DISTINCT FROM $2)",
            ),
            (
                "not (userType eq 'a' and status/errorCode gt 0)",
                "(user_type IS DISTINCT FROM $1 OR error_code IS NULL OR error_code <= $2)",
            ),
            (
                "userType eq 'a' or userType eq 'b' and riskState eq 'c'",
                "(user_type = $1 OR (user_type = $2 AND risk_state = $3))",
            ),
            (
                "isInteractive in (true, false)",
                "(is_interactive OR NOT is_interactive)",
            ),
            ("not isInteractive in (true)", "is_interactive IS NOT TRUE"),
            (
                "createdDateTime in (2021-10-01, 2021-10-02)",
                "(created_at = $1 OR created_at = $2)",
            ),
            (
                "userId in (de8bc8b5-d9f9-48b1-a8ad-b748da725064)",
                "user_id = ANY($1)",
            ),
            ("status/errorCode in (0, 50126)", "error_code = ANY($1)"),
        ];
        for (input, expected) in cases {
            assert_eq!(sql(input).0, *expected, "input {input:?}");
        }
    }

    #[test]
    fn booleans_are_part_of_the_statement_so_partial_indexes_serve_generic_plans() {
        let cases = [
            ("flaggedForReview eq true", "flagged_for_review"),
            ("flaggedForReview eq false", "NOT flagged_for_review"),
            ("flaggedForReview ne true", "flagged_for_review IS NOT TRUE"),
            (
                "not (isInteractive eq false)",
                "is_interactive IS NOT FALSE",
            ),
            ("isInteractive in (true)", "is_interactive"),
            (
                "not (isInteractive in (true, false))",
                "(is_interactive IS NOT TRUE AND is_interactive IS NOT FALSE)",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(sql(input), (expected.to_owned(), vec![]), "input {input:?}");
        }
    }

    #[test]
    fn only_time_bounds_booleans_and_one_user_read_in_time_order() {
        let user = "userId eq 8e2c7a4b-3f1d-4c6e-9a5b-2d7f1e3c4b6a";
        let ordered = [
            "flaggedForReview eq true".to_owned(),
            "flaggedforReview eq true and userPrincipalname eq 'user@contoso.com'".to_owned(),
            "flaggedForReview eq true and createdDateTime ge 2021-10-01 and \
             userPrincipalName eq 'user@contoso.com'"
                .to_owned(),
            user.to_owned(),
            format!("{user} and isInteractive eq false and createdDateTime lt 2024-01-01"),
            "not (flaggedForReview eq true)".to_owned(),
        ];
        for input in &ordered {
            let expr = parse(input).unwrap().unwrap();
            assert!(
                translate(&expr, &mut Vec::new()).reads_in_time_order,
                "{input}"
            );
        }
        let by_value = [
            // Unique, but its index is not in time order: the time order would read the tenant.
            "id eq 8e2c7a4b-3f1d-4c6e-9a5b-2d7f1e3c4b6a".to_owned(),
            "appId eq 'de8bc8b5-d9f9-48b1-a8ad-b748da725064'".to_owned(),
            format!("{user} and status/errorCode eq 50126"),
            format!("{user} or flaggedForReview eq true"),
            "userId ne 8e2c7a4b-3f1d-4c6e-9a5b-2d7f1e3c4b6a".to_owned(),
            "userPrincipalName in ('a@contoso.com', 'b@contoso.com')".to_owned(),
            "startswith(userPrincipalName, 'a')".to_owned(),
        ];
        for input in &by_value {
            let expr = parse(input).unwrap().unwrap();
            assert!(
                !translate(&expr, &mut Vec::new()).reads_in_time_order,
                "{input}"
            );
        }
    }

    #[test]
    fn parameters_are_numbered_after_existing_ones() {
        let mut params = vec![SqlValue::Int(7), SqlValue::Bool(false)];
        let text = to_sql(
            &parsed("userType eq 'a' and status/errorCode in (1, 2)"),
            &mut params,
        );
        assert_eq!(text, "(user_type = $3 AND error_code = ANY($4))");
        assert_eq!(
            params,
            vec![
                SqlValue::Int(7),
                SqlValue::Bool(false),
                SqlValue::Text("a".to_owned()),
                SqlValue::IntArray(vec![1, 2])
            ]
        );
    }

    #[test]
    fn like_metacharacters_are_escaped() {
        assert_eq!(
            sql(r"startswith(userType, 'a%_\b')").1,
            vec![SqlValue::Text(r"a\%\_\\b%".to_owned())]
        );
    }

    #[test]
    fn values_never_reach_sql_text() {
        let (text, _) = sql(
            "userDisplayName eq 'x''; DROP TABLE sign_ins; --' or startswith(userType, '%') or status/errorCode eq 123456",
        );
        assert!(!text.contains("DROP"), "{text}");
        assert!(!text.contains('%'), "{text}");
        assert!(!text.contains("123456"), "{text}");
    }

    #[test]
    fn guid_literals() {
        let guid = Uuid::from_u128(0xde8bc8b5_d9f9_48b1_a8ad_b748da725064);
        assert_eq!(
            parsed("userId eq DE8BC8B5-D9F9-48B1-A8AD-B748DA725064"),
            cmp(Property::UserId, CmpOp::Eq, Value::Guid(guid))
        );
        assert_eq!(
            parsed("id eq 'de8bc8b5-d9f9-48b1-a8ad-b748da725064'"),
            cmp(Property::Id, CmpOp::Eq, Value::Guid(guid))
        );
        assert_eq!(
            parsed("appId eq DE8BC8B5-d9f9-48b1-a8ad-b748da725064"),
            cmp(
                Property::AppId,
                CmpOp::Eq,
                text("de8bc8b5-d9f9-48b1-a8ad-b748da725064")
            )
        );
        // A GUID that starts with digits is still one token.
        assert_eq!(
            parsed("userId eq 12345678-1234-1234-1234-123456789abc"),
            cmp(
                Property::UserId,
                CmpOp::Eq,
                Value::Guid(Uuid::from_u128(0x12345678_1234_1234_1234_123456789abc))
            )
        );
        assert_eq!(sql("userId eq null").0, "user_id IS NULL");
    }

    #[test]
    fn keywords_and_properties_are_case_insensitive() {
        assert_eq!(
            parsed(
                "FlaggedForReview EQ TRUE AND NOT UserId EQ NULL Or deviceDetail/BROWSER Ne 'Edge'"
            ),
            Expr::Or(
                Box::new(and(
                    cmp(Property::FlaggedForReview, CmpOp::Eq, Value::Bool(true)),
                    Expr::Not(Box::new(cmp(Property::UserId, CmpOp::Eq, Value::Null)))
                )),
                Box::new(cmp(Property::DeviceBrowser, CmpOp::Ne, text("Edge")))
            )
        );
        assert_eq!(
            Property::parse("STATUS/ERRORCODE"),
            Some(Property::StatusErrorCode)
        );
        assert_eq!(
            Property::parse("deviceDetail/browser"),
            Some(Property::DeviceBrowser)
        );
        assert_eq!(Property::parse("location"), None);
    }

    #[test]
    fn whitespace_between_tokens() {
        assert_eq!(
            parsed("\n\t( flaggedForReview\teq\ntrue )  "),
            parsed("flaggedForReview eq true")
        );
        assert_eq!(parsed("userType eq'x'"), parsed("userType eq 'x'"));
    }

    #[test]
    fn empty_filter_is_none() {
        assert_eq!(parse(""), Ok(None));
        assert_eq!(parse(" \t\n "), Ok(None));
    }

    #[test]
    fn property_table_is_consistent() {
        for p in Property::ALL {
            assert_eq!(Property::parse(p.name()), Some(p));
            assert_eq!(Property::parse(&p.name().to_uppercase()), Some(p));
            assert!(
                p.column()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                p.column()
            );
        }
        let mut columns: Vec<_> = Property::ALL.iter().map(|p| p.column()).collect();
        columns.sort_unstable();
        columns.dedup();
        assert_eq!(columns.len(), Property::ALL.len());
    }

    #[test]
    fn matches_follows_odata_null_semantics() {
        let absent = row(&[]);
        let present = row(&[
            (Property::UserType, text("member")),
            (Property::FlaggedForReview, Value::Bool(true)),
            (Property::StatusErrorCode, Value::Int(0)),
        ]);
        let cases: &[(&str, bool, bool)] = &[
            ("userType eq 'member'", false, true),
            ("userType ne 'member'", true, false),
            ("userType ne 'guest'", true, true),
            ("userType gt 'a'", false, true),
            ("not (userType gt 'a')", true, false),
            ("userType eq null", true, false),
            ("userType ne null", false, true),
            ("userType in ('member', 'guest')", false, true),
            ("not (userType in ('guest'))", true, true),
            ("startswith(userType, 'mem')", false, true),
            ("not startswith(userType, 'mem')", true, false),
            ("flaggedForReview eq true", false, true),
            ("status/errorCode eq null", true, false),
        ];
        for (input, on_absent, on_present) in cases {
            let e = parsed(input);
            assert_eq!(matches(&e, &absent), *on_absent, "{input} on absent");
            assert_eq!(matches(&e, &present), *on_present, "{input} on present");
        }
    }

    #[test]
    fn upn_comparison_is_case_insensitive_against_lowercase_storage() {
        let stored = row(&[(Property::UserPrincipalName, text("adele@contoso.com"))]);
        assert!(matches(
            &parsed("userPrincipalName eq 'Adele@Contoso.com'"),
            &stored
        ));
        assert!(matches(
            &parsed("userPrincipalName in ('X@y.com', 'ADELE@CONTOSO.COM')"),
            &stored
        ));
    }

    #[test]
    fn display_and_error_trait() {
        let e = error("fooBar eq 1");
        assert_eq!(
            e.to_string(),
            "invalid filter at position 0: unknown property 'fooBar'"
        );
        let _: &dyn Error = &e;
    }

    #[test]
    fn sql_value_accepts_only_matching_types() {
        assert!(<SqlValue as ToSql>::accepts(&Type::TEXT));
        assert!(<SqlValue as ToSql>::accepts(&Type::UUID_ARRAY));
        assert!(<SqlValue as ToSql>::accepts(&Type::TIMESTAMPTZ));
        assert!(!<SqlValue as ToSql>::accepts(&Type::FLOAT8));
        let mut out = BytesMut::new();
        assert!(
            SqlValue::Int(5)
                .to_sql_checked(&Type::INT4, &mut out)
                .is_ok()
        );
        assert!(
            SqlValue::Int(5)
                .to_sql_checked(&Type::TEXT, &mut out)
                .is_err()
        );
        assert!(
            SqlValue::TextArray(vec!["a".to_owned()])
                .to_sql_checked(&Type::TEXT_ARRAY, &mut out)
                .is_ok()
        );
    }

    // -- errors ------------------------------------------------------------------

    #[test]
    fn error_unknown_property() {
        assert_error("fooBar eq 1", 0, "unknown property 'fooBar'");
        assert_error(
            "flaggedForReview eq true and location/town eq 'x'",
            29,
            "unknown property 'location/town'",
        );
        assert_error(
            "contains(userType, 'x')",
            0,
            "unsupported function 'contains'; only startswith is supported",
        );
    }

    #[test]
    fn error_missing_operator() {
        assert_error(
            "userId equals 'x'",
            7,
            "expected a comparison operator (eq, ne, gt, ge, lt, le, in) after 'userId', found 'equals'",
        );
    }

    #[test]
    fn error_type_mismatch() {
        assert_error(
            "status/errorCode eq '50126'",
            20,
            "property 'status/errorCode' expects an integer, found a string",
        );
        assert_error(
            "createdDateTime ge '2021-10-01'",
            19,
            "property 'createdDateTime' expects a date or date-time, found a string",
        );
        assert_error(
            "userType eq 5",
            12,
            "property 'userType' expects a string, found an integer",
        );
        assert_error(
            "id eq 'abc'",
            6,
            "property 'id' expects a GUID, found a string that is not a GUID",
        );
        assert_error(
            "flaggedForReview eq 'true'",
            20,
            "property 'flaggedForReview' expects true or false, found a string",
        );
        assert_error(
            "flaggedForReview gt false",
            17,
            "property 'flaggedForReview' is a boolean and supports only eq, ne and in, not 'gt'",
        );
        assert_error(
            "createdDateTime gt null",
            19,
            "null can only be compared with eq or ne, not 'gt'",
        );
        assert_error(
            "userType in ('a', null)",
            18,
            "null is not allowed in an 'in' list; use 'eq null'",
        );
        assert_error(
            "startswith(status/errorCode, '5')",
            11,
            "startswith needs a string property, but 'status/errorCode' expects an integer",
        );
        assert_error(
            "startswith(userType, 5)",
            21,
            "startswith expects a string as its second argument, found '5'",
        );
        assert_error(
            "userType eq member",
            12,
            "expected a value after 'eq', found 'member' (string values need single quotes)",
        );
    }

    #[test]
    fn error_unterminated_string() {
        assert_error(
            "userDisplayName eq 'O''Brien",
            19,
            "unterminated string literal",
        );
    }

    #[test]
    fn error_dangling_operator() {
        assert_error(
            "flaggedForReview eq",
            19,
            "expected a value after 'eq', found end of input",
        );
        // The first problem from the left wins: `a` is not a property.
        assert_error("a eq 1 and", 0, "unknown property 'a'");
        assert_error(
            "status/errorCode eq 1 and",
            25,
            "expected a condition after 'and', found end of input",
        );
        assert_error(
            "status/errorCode eq 1 or not",
            28,
            "expected a condition after 'not', found end of input",
        );
    }

    #[test]
    fn error_unbalanced_parentheses() {
        assert_error(
            "(flaggedForReview eq true",
            25,
            "expected ')' to close the '(' at position 0, found end of input",
        );
        assert_error("flaggedForReview eq true)", 24, "unexpected ')'");
        assert_error("()", 1, "expected a condition after '(', found ')'");
        assert_error(
            "flaggedForReview eq true userType eq 'a'",
            25,
            "expected 'and', 'or' or the end of the filter, found 'userType'",
        );
    }

    #[test]
    fn error_too_long() {
        let at_limit = format!("userType eq '{}'", "a".repeat(MAX_FILTER_BYTES - 14));
        assert_eq!(at_limit.len(), MAX_FILTER_BYTES);
        assert!(parse(&at_limit).is_ok());
        let over = format!("userType eq '{}'", "a".repeat(MAX_FILTER_BYTES - 13));
        assert_eq!(over.len(), 4097);
        assert_error(&over, 4096, "filter is longer than 4096 bytes");
    }

    #[test]
    fn error_too_deep() {
        let nested =
            |n: usize| format!("{}flaggedForReview eq true{}", "(".repeat(n), ")".repeat(n));
        assert!(parse(&nested(32)).is_ok());
        assert_error(&nested(33), 32, "filter nests deeper than 32 levels");
        let nots = format!("{}flaggedForReview eq true", "not ".repeat(33));
        assert_error(&nots, 128, "filter nests deeper than 32 levels");
    }

    #[test]
    fn error_too_many_terms() {
        let terms = |n: usize| vec!["flaggedForReview eq true"; n].join(" and ");
        assert!(parse(&terms(100)).is_ok());
        assert_error(&terms(101), 2900, "filter has more than 100 terms");
    }

    #[test]
    fn error_integer_overflow() {
        assert_error(
            "status/errorCode eq 2147483648",
            20,
            "integer 2147483648 does not fit in a 32-bit signed integer",
        );
        assert_error(
            "status/errorCode eq -2147483649",
            20,
            "integer -2147483649 does not fit in a 32-bit signed integer",
        );
        assert_eq!(
            parsed("status/errorCode eq -2147483648"),
            cmp(Property::StatusErrorCode, CmpOp::Eq, Value::Int(i32::MIN))
        );
    }

    #[test]
    fn error_bad_tokens() {
        assert_error(
            "createdDateTime ge 2021-13-01",
            19,
            "invalid date '2021-13-01'",
        );
        assert_error(
            "createdDateTime ge 2021-10-01T25:00:00Z",
            19,
            "invalid date-time '2021-10-01T25:00:00Z' (expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM)",
        );
        assert_error(
            "createdDateTime ge 2021-10-01T00:00:00",
            19,
            "invalid date-time '2021-10-01T00:00:00' (expected YYYY-MM-DDTHH:MM:SS[.fraction] followed by Z or ±HH:MM)",
        );
        assert_error("userType eq @x", 12, "unrecognised token '@x'");
        assert_error(
            "userType eq 'a\0b'",
            14,
            "string literals cannot contain the NUL character",
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        assert_error(
            "userDisplayName eq 'é' and fooBar eq 1",
            27,
            "unknown property 'fooBar'",
        );
        let wide = format!("userType eq '{}'", "é".repeat(2100));
        let e = error(&wide);
        assert_eq!(e.message, "filter is longer than 4096 bytes");
        assert!(e.position <= wide.chars().count());
    }

    // -- properties ----------------------------------------------------------------

    fn guids() -> Vec<Uuid> {
        vec![
            Uuid::from_u128(0xde8bc8b5_d9f9_48b1_a8ad_b748da725064),
            Uuid::from_u128(0x00000000_0000_0000_0000_000000000001),
            Uuid::from_u128(0xffffffff_0000_4000_8000_000000000000),
        ]
    }

    fn times() -> Vec<DateTime<Utc>> {
        vec![
            utc("2021-10-01T00:00:00Z"),
            utc("2024-01-13T14:13:32.123456Z"),
            utc("1999-12-31T23:59:59Z"),
        ]
    }

    const STRINGS: &[&str] = &[
        "", "a", "A", "ab", "b", "O'Brien", "%", "a_b", "a\\b", "Redmond", "é", "日本", " x ",
        "and",
    ];

    fn value_strategy(property: Property, for_row: bool) -> BoxedStrategy<Value> {
        match property.kind() {
            Kind::Guid => select(guids()).prop_map(Value::Guid).boxed(),
            Kind::String => select(STRINGS)
                .prop_map(move |s| {
                    if for_row {
                        text(s)
                    } else {
                        Value::String(normalise(property, s.to_owned()))
                    }
                })
                .boxed(),
            Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            Kind::Int => prop_oneof![select(vec![-1, 0, 1, 50126]), any::<i32>()]
                .prop_map(Value::Int)
                .boxed(),
            Kind::DateTime => select(times()).prop_map(Value::DateTime).boxed(),
        }
    }

    const OPS: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Gt,
        CmpOp::Ge,
        CmpOp::Lt,
        CmpOp::Le,
    ];

    /// `valid`: only expressions `parse` can produce. Otherwise also
    /// hand-built ones with mismatched kinds, nulls in lists and orderings
    /// against null, which `to_sql` must still translate faithfully.
    fn leaf(valid: bool) -> BoxedStrategy<Expr> {
        select(Property::ALL.to_vec())
            .prop_flat_map(move |p| {
                let ops = if p.kind() == Kind::Bool {
                    vec![CmpOp::Eq, CmpOp::Ne]
                } else {
                    OPS.to_vec()
                };
                let mut options: Vec<BoxedStrategy<Expr>> = vec![
                    (select(ops), value_strategy(p, false))
                        .prop_map(move |(op, value)| cmp(p, op, value))
                        .boxed(),
                    select(vec![CmpOp::Eq, CmpOp::Ne])
                        .prop_map(move |op| cmp(p, op, Value::Null))
                        .boxed(),
                    prop::collection::vec(value_strategy(p, false), 1..4)
                        .prop_map(move |values| Expr::In {
                            property: p,
                            values,
                        })
                        .boxed(),
                ];
                if p.kind() == Kind::String {
                    options.push(
                        select(STRINGS)
                            .prop_map(move |s| Expr::StartsWith {
                                property: p,
                                prefix: normalise(p, s.to_owned()),
                            })
                            .boxed(),
                    );
                }
                if !valid {
                    let any_value = || {
                        prop_oneof![
                            Just(Value::Null),
                            select(Property::ALL.to_vec())
                                .prop_flat_map(|q| value_strategy(q, false))
                        ]
                    };
                    options.push(
                        (select(OPS.to_vec()), any_value())
                            .prop_map(move |(op, value)| cmp(p, op, value))
                            .boxed(),
                    );
                    options.push(
                        prop::collection::vec(any_value(), 0..4)
                            .prop_map(move |values| Expr::In {
                                property: p,
                                values,
                            })
                            .boxed(),
                    );
                    options.push(
                        select(STRINGS)
                            .prop_map(move |s| Expr::StartsWith {
                                property: p,
                                prefix: s.to_owned(),
                            })
                            .boxed(),
                    );
                }
                Union::new(options)
            })
            .boxed()
    }

    fn expr_strategy(valid: bool) -> impl Strategy<Value = Expr> {
        leaf(valid).prop_recursive(4, 16, 2, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| and(a, b)),
                (inner.clone(), inner.clone())
                    .prop_map(|(a, b)| Expr::Or(Box::new(a), Box::new(b))),
                inner.prop_map(|e| Expr::Not(Box::new(e))),
            ]
        })
    }

    fn rows_strategy() -> impl Strategy<Value = Vec<TestRow>> {
        let row = Property::ALL
            .iter()
            .map(|&p| prop_oneof![1 => Just(Value::Null), 3 => value_strategy(p, true)].boxed())
            .collect::<Vec<_>>()
            .prop_map(TestRow);
        prop::collection::vec(row, 1..6)
    }

    const TOKENS: &[&str] = &[
        "(",
        ")",
        ",",
        "'",
        "''",
        "'x'",
        "'O''B'",
        "and",
        "OR",
        "not",
        "eq",
        "ne",
        "gt",
        "le",
        "in",
        "startswith",
        "true",
        "null",
        "0",
        "-5",
        "2147483648",
        "99999999999999999999",
        "2021-10-01",
        "2021-13-01",
        "2021-10-01T00:00:00Z",
        "2021-10-01T23:59:60Z",
        "2024-01-13T14:13:32.1234567+02:00",
        "0000-01-01T00:00:00+01:00",
        "de8bc8b5-d9f9-48b1-a8ad-b748da725064",
        "userId",
        "userType",
        "location/city",
        "flaggedForReview",
        "status/errorCode",
        "createdDateTime",
        "userPrincipalName",
        "isInteractive",
        "fooBar",
        "@",
        "é",
        "\0",
        "\t",
    ];

    fn check_no_panic(input: &str) -> Result<(), TestCaseError> {
        match parse(input) {
            Ok(None) => {}
            Ok(Some(e)) => {
                let mut params = Vec::new();
                let text = to_sql(&e, &mut params);
                prop_assert!(!text.is_empty());
                matches(&e, &row(&[]));
                // Parsed expressions are canonical: printing them parses back
                // to the same tree.
                prop_assert_eq!(parse(&print(&e)), Ok(Some(e)));
            }
            Err(err) => prop_assert!(
                err.position <= input.chars().count(),
                "position {} past end of {:?}",
                err.position,
                input
            ),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(input in ".{0,200}") {
            check_no_panic(&input)?;
        }

        #[test]
        fn token_soup_never_panics(
            parts in prop::collection::vec(select(TOKENS), 0..40),
            separator in select(vec!["", " "]),
        ) {
            check_no_panic(&parts.join(separator))?;
        }

        #[test]
        fn nnf_preserves_semantics(e in expr_strategy(false), rows in rows_strategy()) {
            let normal = nnf(&e, false).to_expr();
            prop_assert!(is_nnf(&normal), "{:?}", normal);
            for r in &rows {
                prop_assert_eq!(matches(&e, r), matches(&normal, r), "{:?} on {:?}", normal, r);
            }
        }

        #[test]
        fn sql_agrees_with_matches(e in expr_strategy(false), rows in rows_strategy()) {
            let mut params = Vec::new();
            let cond = lower(&nnf(&e, false), &mut params);
            for r in &rows {
                let sql_result = eval(&cond, r, &params);
                prop_assert_eq!(
                    sql_result == Some(true),
                    matches(&e, r),
                    "{:?} -> {:?} on {:?}", e, cond, r
                );
            }
        }

        #[test]
        fn print_parse_round_trip(e in expr_strategy(true)) {
            let text = print(&e);
            prop_assume!(text.len() <= MAX_FILTER_BYTES);
            prop_assert_eq!(parse(&text), Ok(Some(e)), "{}", text);
        }
    }
}
