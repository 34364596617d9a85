//! Source files as values: what the loader read, handed to the pure core.
//!
//! The shell (`repo`) reads files from a work tree or a git commit and builds a [`SourceSet`];
//! everything after that works on these values. Spans are byte ranges into the file text so
//! that diagnostics can point at the offending characters.

/// What a file is, by where it sits in the repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileKind {
    /// `environments/<env>.yaml`
    Environment,
    /// `tenants/<id>.yaml`
    Tenant,
}

/// Why a file has no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Larger than [`MAX_FILE_BYTES`]; `size` is what the loader saw.
    TooLarge {
        /// Size in bytes.
        size: u64,
    },
    /// Not valid UTF-8; `valid_up_to` bytes were.
    NotUtf8 {
        /// Offset of the first invalid byte.
        valid_up_to: usize,
    },
    /// The read itself failed (message from the OS or git).
    Io(String),
}

/// Files larger than this are refused unread: no tenant or environment file is legitimately
/// this large, and refusing keeps `validate` bounded in time and memory on hostile input.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// One input file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the repo root, with `/` separators (`tenants/acme.yaml`).
    pub path: String,
    /// Environment or tenant file.
    pub kind: FileKind,
    /// The text, or why there is none.
    pub text: Result<String, Unreadable>,
}

impl SourceFile {
    /// The file stem (`acme` for `tenants/acme.yaml`).
    #[must_use]
    pub fn stem(&self) -> &str {
        let name = self.path.rsplit('/').next().unwrap_or(&self.path);
        name.strip_suffix(".yaml")
            .or_else(|| name.strip_suffix(".yml"))
            .unwrap_or(name)
    }

    /// The text, empty when unreadable.
    #[must_use]
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or("")
    }
}

/// Everything the loader read.
#[derive(Debug, Clone, Default)]
pub struct SourceSet {
    /// Files, in the order given (the loader sorts by path).
    pub files: Vec<SourceFile>,
}

/// Index of a file in a [`SourceSet`].
pub type FileId = usize;

/// A byte range in one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end`.
    #[must_use]
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// 1-based line and column (in characters) of a byte offset.
#[must_use]
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let before = &text[..offset];
    let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while offset > 0 && !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}
