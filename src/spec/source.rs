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
    /// A symlink or special file: berth reads regular files only, so a link cannot pull a
    /// file from outside the repo into a plan.
    NotAFile,
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

/// One directory entry of a berth repo as a reader found it (work tree or git tree), before
/// the rules of [`build_source_set`] are applied.
#[derive(Debug, Clone)]
pub struct Found {
    /// `environments` or `tenants`.
    pub dir: String,
    /// File name within it.
    pub name: String,
    /// What the entry is.
    pub entry: FoundEntry,
}

/// What a found entry holds.
#[derive(Debug, Clone)]
pub enum FoundEntry {
    /// A regular file: its bytes (at most [`MAX_FILE_BYTES`] + 1 were read) and full size.
    File {
        /// Bytes read.
        bytes: Vec<u8>,
        /// Size on disk or in git.
        size: u64,
    },
    /// A regular file that could not be read.
    Failed(String),
    /// A symlink, directory or special file.
    Other,
}

/// The one set of rules for turning a repo listing into a [`SourceSet`], shared by the
/// work-tree reader and the git reader: only `environments/` and `tenants/`, only `.yaml` and
/// `.yml`, no dot files, regular files only, the size cap, UTF-8, sorted by kind then path.
/// `embedded` (the default local environment) is added only when the repo has no environment
/// file of its own.
#[must_use]
pub fn build_source_set(found: Vec<Found>, embedded: Option<SourceFile>) -> SourceSet {
    let mut files = Vec::new();
    for f in found {
        let kind = match f.dir.as_str() {
            "environments" => FileKind::Environment,
            "tenants" => FileKind::Tenant,
            _ => continue,
        };
        let is_yaml = f.name.ends_with(".yaml") || f.name.ends_with(".yml");
        if !is_yaml || f.name.starts_with('.') {
            continue;
        }
        let text = match f.entry {
            FoundEntry::File { size, .. } if size > MAX_FILE_BYTES => {
                Err(Unreadable::TooLarge { size })
            }
            FoundEntry::File { bytes, .. } if bytes.len() as u64 > MAX_FILE_BYTES => {
                Err(Unreadable::TooLarge {
                    size: bytes.len() as u64,
                })
            }
            FoundEntry::File { bytes, .. } => {
                String::from_utf8(bytes).map_err(|e| Unreadable::NotUtf8 {
                    valid_up_to: e.utf8_error().valid_up_to(),
                })
            }
            FoundEntry::Failed(message) => Err(Unreadable::Io(message)),
            FoundEntry::Other => Err(Unreadable::NotAFile),
        };
        files.push(SourceFile {
            path: format!("{}/{}", f.dir, f.name),
            kind,
            text,
        });
    }
    if !files.iter().any(|f| f.kind == FileKind::Environment)
        && let Some(embedded) = embedded
    {
        files.push(embedded);
    }
    files.sort_by(|a, b| (a.kind, &a.path).cmp(&(b.kind, &b.path)));
    SourceSet { files }
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
