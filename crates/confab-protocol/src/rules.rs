//! The rules for room names, display names and passwords: the one Rust copy.
//!
//! `ui/rules.js` is the same rules for the desktop window and the web client; the shared table
//! `crates/confab-protocol/tests/rules.json` (input → normalized form, or error code and
//! message) is run against both, so the two cannot drift apart. Change all three together.
//!
//! A display name is first normalized ([`normalize_name`]: Unicode NFC, every run of spaces
//! made one ASCII space, trimmed), then checked ([`check_name`]) — the server stores and
//! announces the normalized form. A name may not hold characters that make two names look the
//! same or make text around a name read differently: control characters, bidirectional
//! controls, line and paragraph separators, and invisible characters (zero-width, fillers,
//! stray variation selectors and tags; a zero-width joiner is allowed only inside an emoji
//! sequence).

use unicode_normalization::UnicodeNormalization;

/// Longest room name, in bytes (rooms are ASCII).
pub const MAX_ROOM_LEN: usize = 64;
/// Longest display name, in characters (Unicode scalar values), after normalization.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest room password, in bytes (UTF-8).
pub const MAX_PASSWORD_LEN: usize = 256;

/// Why a room name, display name or password breaks the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("the room name is empty")]
    RoomEmpty,
    #[error("the room name is longer than {MAX_ROOM_LEN} characters")]
    RoomTooLong,
    #[error(
        "the room name may only hold letters, digits, '.', '_' and '-' (found {})",
        shown(*.0)
    )]
    RoomCharacter(char),
    #[error("the name is empty")]
    NameEmpty,
    #[error("the name is longer than {MAX_NAME_CHARS} characters")]
    NameTooLong,
    #[error("the name contains a control character ({})", shown(*.0))]
    NameControl(char),
    #[error("the name contains a character that changes the direction of text ({})", shown(*.0))]
    NameBidi(char),
    #[error("the name contains a line or paragraph separator ({})", shown(*.0))]
    NameSeparator(char),
    #[error("the name contains an invisible character ({})", shown(*.0))]
    NameInvisible(char),
    #[error("the password is longer than {MAX_PASSWORD_LEN} bytes")]
    PasswordTooLong,
}

impl RuleError {
    /// A stable key for the rule that was broken (the `error` column of `rules.json`).
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::RoomEmpty => "room-empty",
            RuleError::RoomTooLong => "room-too-long",
            RuleError::RoomCharacter(_) => "room-character",
            RuleError::NameEmpty => "name-empty",
            RuleError::NameTooLong => "name-too-long",
            RuleError::NameControl(_) => "name-control",
            RuleError::NameBidi(_) => "name-bidi",
            RuleError::NameSeparator(_) => "name-separator",
            RuleError::NameInvisible(_) => "name-invisible",
            RuleError::PasswordTooLong => "password-too-long",
        }
    }
}

/// A character quoted in an error message: `'x'` when it is printable ASCII, `U+XXXX` otherwise
/// (so that the message itself carries nothing invisible).
fn shown(c: char) -> String {
    if c.is_ascii_graphic() || c == ' ' {
        format!("'{c}'")
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// Checks a room name: 1–64 characters of `[A-Za-z0-9._-]`.
pub fn check_room(room: &str) -> Result<(), RuleError> {
    if room.is_empty() {
        return Err(RuleError::RoomEmpty);
    }
    if let Some(c) = room
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(RuleError::RoomCharacter(c));
    }
    if room.len() > MAX_ROOM_LEN {
        return Err(RuleError::RoomTooLong);
    }
    Ok(())
}

/// Checks a room name; the error is a sentence for people.
pub fn validate_room(room: &str) -> Result<(), String> {
    check_room(room).map_err(|e| e.to_string())
}

/// Spaces that a name may hold, all shown as one ASCII space after normalization. Control
/// characters (tab, newline) and the line/paragraph separators are not among them: they are
/// refused, not repaired.
fn is_name_space(c: char) -> bool {
    matches!(
        c,
        ' ' | '\u{00A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// The form of a display name the server keeps and announces: Unicode NFC, every run of
/// spaces (see the module docs) replaced by one ASCII space, no space at either end.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut pending_space = false;
    for c in name.nfc() {
        if is_name_space(c) {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn is_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// Characters that show nothing (or a blank) wherever they stand.
fn is_always_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                      // soft hyphen
        | '\u{034F}'                    // combining grapheme joiner
        | '\u{115F}' | '\u{1160}'       // Hangul choseong/jungseong fillers
        | '\u{17B4}' | '\u{17B5}'       // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}'       // Mongolian variation selectors, vowel separator
        | '\u{200B}' | '\u{200C}'       // zero width space, zero width non-joiner
        | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
        | '\u{206A}'..='\u{206F}'       // deprecated format characters
        | '\u{2800}'                    // braille pattern blank
        | '\u{3164}'                    // Hangul filler
        | '\u{FEFF}'                    // zero width no-break space (BOM)
        | '\u{FFA0}'                    // halfwidth Hangul filler
        | '\u{FFF9}'..='\u{FFFB}'       // interlinear annotation
        | '\u{1D173}'..='\u{1D17A}' // musical symbol formatting
    )
}

/// Characters drawn as emoji: the only ones a zero-width joiner may join, and the only ones
/// (with keycap bases and CJK ideographs) a variation selector may follow.
fn is_emoji_like(c: char) -> bool {
    matches!(c,
        '\u{2300}'..='\u{23FF}' | '\u{2600}'..='\u{27BF}' | '\u{2B00}'..='\u{2BFF}'
        | '\u{1F000}'..='\u{1FAFF}')
}

fn is_cjk_ideograph(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}'
        | '\u{20000}'..='\u{3FFFF}')
}

fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0020}'..='\u{E007F}')
}

/// Whether the character at `i` of `chars` is invisible where it stands.
fn is_invisible_at(chars: &[char], i: usize) -> bool {
    let c = chars[i];
    if is_always_invisible(c) {
        return true;
    }
    let prev = i.checked_sub(1).map(|p| chars[p]);
    if c == '\u{200D}' {
        // Zero width joiner: only between two emoji (👩‍💻), where the emoji before may carry
        // a variation selector (❤️‍🔥).
        let mut before = prev;
        if before.is_some_and(is_variation_selector) {
            before = i.checked_sub(2).map(|p| chars[p]);
        }
        let after = chars.get(i + 1).copied();
        return !(before.is_some_and(is_emoji_like) && after.is_some_and(is_emoji_like));
    }
    if is_variation_selector(c) {
        // Only right after an emoji, a keycap base (1️⃣) or a CJK ideograph.
        return !prev.is_some_and(|p| {
            is_emoji_like(p) || p.is_ascii_digit() || p == '#' || p == '*' || is_cjk_ideograph(p)
        });
    }
    if is_tag(c) {
        // Only in a flag's tag sequence: 🏴 followed by tags.
        return !prev.is_some_and(|p| p == '\u{1F3F4}' || is_tag(p));
    }
    false
}

/// Normalizes a display name ([`normalize_name`]) and checks it: 1–64 characters, none of them
/// a control character, a bidirectional control, a line/paragraph separator or invisible.
/// Returns the normalized name.
pub fn check_name(name: &str) -> Result<String, RuleError> {
    let name = normalize_name(name);
    if name.is_empty() {
        return Err(RuleError::NameEmpty);
    }
    let chars: Vec<char> = name.chars().collect();
    if chars.len() > MAX_NAME_CHARS {
        return Err(RuleError::NameTooLong);
    }
    for (i, &c) in chars.iter().enumerate() {
        if c.is_control() {
            return Err(RuleError::NameControl(c));
        }
        if is_bidi_control(c) {
            return Err(RuleError::NameBidi(c));
        }
        if is_separator(c) {
            return Err(RuleError::NameSeparator(c));
        }
        if is_invisible_at(&chars, i) {
            return Err(RuleError::NameInvisible(c));
        }
    }
    Ok(name)
}

/// Chat text as it may be shown: NFC; line and paragraph separators become newlines; control
/// characters other than newline and tab, bidirectional controls and invisible characters are
/// removed (they can make a line read differently from what it is, or hide text); at most two
/// empty lines in a row; no blank at either end. Text is repaired, not refused: it is shown
/// as text, never acted on.
pub fn clean_text(text: &str) -> String {
    let chars: Vec<char> = text
        .nfc()
        .map(|c| {
            if is_separator(c) || c == '\r' {
                '\n'
            } else {
                c
            }
        })
        .collect();
    let mut out = String::with_capacity(text.len());
    let mut newlines = 0;
    for (i, &c) in chars.iter().enumerate() {
        let keep = match c {
            '\n' => {
                newlines += 1;
                newlines <= 3
            }
            '\t' => true,
            c if c.is_control() || is_bidi_control(c) => false,
            _ => !is_invisible_at(&chars, i),
        };
        if keep {
            if c != '\n' && !c.is_whitespace() {
                newlines = 0;
            }
            out.push(c);
        }
    }
    out.trim().to_owned()
}

/// Checks a display name as [`check_name`] does; the error is a sentence for people.
pub fn validate_name(name: &str) -> Result<(), String> {
    check_name(name).map(|_| ()).map_err(|e| e.to_string())
}

/// Checks a room password: at most 256 bytes (any characters are allowed).
pub fn check_password(password: &str) -> Result<(), RuleError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(RuleError::PasswordTooLong);
    }
    Ok(())
}

/// Checks a room password's length; the error is a sentence for people.
pub fn validate_password(password: &str) -> Result<(), String> {
    check_password(password).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn chat_text_is_repaired_to_what_it_says() {
        // Bidi override would make "gpj.exe" read as "exe.jpg"; it goes.
        assert_eq!(clean_text("photo\u{202E}gpj.exe"), "photogpj.exe");
        // Zero-width characters hidden in a link go; a joined emoji stays.
        assert_eq!(
            clean_text("exa\u{200B}mple.com 👩\u{200D}💻"),
            "example.com 👩\u{200D}💻"
        );
        // Controls go (bell, escape), newline and tab stay, separators become newlines.
        assert_eq!(
            clean_text("a\u{7}b\u{1b}[31mc\td\u{2028}e"),
            "ab[31mc\td\ne"
        );
        // No walls of empty lines, no blank ends; NFC.
        assert_eq!(
            clean_text("\n\n top\n\n\n\n\n\nbottom \n"),
            "top\n\n\nbottom"
        );
        assert_eq!(clean_text("e\u{301}"), "\u{e9}");
        assert_eq!(clean_text("\u{200B}\u{202E}"), "");
    }

    use super::*;

    #[test]
    fn room_rules() {
        assert!(validate_room("team-1.a_b").is_ok());
        assert!(validate_room(&"a".repeat(64)).is_ok());
        assert_eq!(check_room(&"a".repeat(65)), Err(RuleError::RoomTooLong));
        assert_eq!(check_room(""), Err(RuleError::RoomEmpty));
        assert_eq!(check_room("a b"), Err(RuleError::RoomCharacter(' ')));
        assert_eq!(check_room("é"), Err(RuleError::RoomCharacter('é')));
        assert!(validate_room("a/b").unwrap_err().contains("(found '/')"));
        assert!(validate_room("é").unwrap_err().contains("(found U+00E9)"));
    }

    #[test]
    fn name_rules() {
        assert!(validate_name("Ada Lovelace").is_ok());
        assert!(validate_name("Zoë 🎥").is_ok());
        assert!(validate_name(&"é".repeat(64)).is_ok());
        assert!(validate_name(&"é".repeat(65)).is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name("a\u{7}").is_err());
        assert_eq!(
            check_name("Ada\u{202E}"),
            Err(RuleError::NameBidi('\u{202E}'))
        );
        assert_eq!(
            check_name("A\u{200B}da"),
            Err(RuleError::NameInvisible('\u{200B}'))
        );
        assert_eq!(
            check_name("a\u{2028}b"),
            Err(RuleError::NameSeparator('\u{2028}'))
        );
    }

    #[test]
    fn names_are_normalized_to_nfc_with_single_spaces() {
        assert_eq!(check_name("Zoe\u{0308}").unwrap(), "Zo\u{EB}");
        assert_eq!(
            check_name("  Ada \u{00A0}\u{3000} Lovelace ").unwrap(),
            "Ada Lovelace"
        );
        // NFC can shorten a name under the limit.
        let decomposed = "e\u{0301}".repeat(64);
        assert_eq!(check_name(&decomposed).unwrap(), "é".repeat(64));
    }

    #[test]
    fn zero_width_joiner_only_inside_emoji() {
        assert!(check_name("👩\u{200D}💻 Ada").is_ok());
        assert!(check_name("❤\u{FE0F}\u{200D}🔥").is_ok());
        assert_eq!(
            check_name("A\u{200D}da"),
            Err(RuleError::NameInvisible('\u{200D}'))
        );
        assert_eq!(
            check_name("Ada\u{FE0F}"),
            Err(RuleError::NameInvisible('\u{FE0F}'))
        );
        assert!(check_name("1\u{FE0F}\u{20E3}").is_ok());
    }
}
