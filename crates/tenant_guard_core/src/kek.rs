//! Master key (KEK) providers: where the key that wraps every tenant data key comes from. SQL never sees it.
//!
//! - **file**: a file owned by the server's OS user and readable by it alone (mode 0600 or stricter), holding 32
//!   random bytes as 64 hex digits or as base64 (standard or URL-safe alphabet, padding optional);
//! - **command**: a program run through `/bin/sh -c` that prints the key the same way on standard output. This is how
//!   a KMS or Vault plugs in. Its standard error is discarded (it could carry secrets into the server log), its
//!   output is read up to 4 KiB, and a non-zero exit status is an error.
//!
//! Errors say what to fix and never contain key material, file contents or command output.

use crate::ciphertext::{Key, KEY_LEN};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

/// Most bytes read from a key file or a key command.
const MAX_MATERIAL_BYTES: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekError {
    /// Not a 32-byte key in hex or base64.
    BadMaterial,
    /// The key file could not be opened or read (the io error kind, no contents).
    Unreadable(std::io::ErrorKind),
    /// The key file can be read or written by group or others.
    TooOpen { mode: u32 },
    /// The key file is not owned by the server's OS user.
    NotOwned,
    /// The key command could not be started.
    CommandNotStarted(std::io::ErrorKind),
    /// The key command exited with a failure status (None: killed by a signal).
    CommandFailed(Option<i32>),
}

impl fmt::Display for KekError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KekError::BadMaterial => {
                write!(f, "the master key is not {KEY_LEN} bytes written as 64 hex digits or as base64")
            }
            KekError::Unreadable(kind) => write!(f, "the master key file cannot be read ({kind})"),
            KekError::TooOpen { mode } => write!(
                f,
                "the master key file has mode {mode:04o}; it must be readable by the server's OS user only (0600)"
            ),
            KekError::NotOwned => f.write_str("the master key file must be owned by the server's OS user"),
            KekError::CommandNotStarted(kind) => write!(f, "the master key command could not be started ({kind})"),
            KekError::CommandFailed(Some(code)) => write!(f, "the master key command exited with status {code}"),
            KekError::CommandFailed(None) => f.write_str("the master key command was killed by a signal"),
        }
    }
}

const BASE64_LENIENT_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, BASE64_LENIENT_PADDING);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, BASE64_LENIENT_PADDING);

/// Parses key material: surrounding whitespace is ignored; 64 hex digits, or base64 of exactly 32 bytes.
pub fn parse_material(raw: &[u8]) -> Result<Key, KekError> {
    let text = raw.trim_ascii();
    let bytes: Zeroizing<Vec<u8>> = if text.len() == 2 * KEY_LEN && text.iter().all(u8::is_ascii_hexdigit) {
        Zeroizing::new(
            text.chunks(2)
                .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("hex digits are ASCII"), 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KekError::BadMaterial)?,
        )
    } else {
        let decoded = STANDARD.decode(text).or_else(|_| URL_SAFE.decode(text)).map_err(|_| KekError::BadMaterial)?;
        Zeroizing::new(decoded)
    };
    if bytes.len() != KEY_LEN {
        return Err(KekError::BadMaterial);
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&bytes);
    Ok(key)
}

/// Refuses a key file that others could read or write, or that another user owns.
pub fn check_file(meta: &std::fs::Metadata, server_uid: u32) -> Result<(), KekError> {
    if meta.uid() != server_uid {
        return Err(KekError::NotOwned);
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KekError::TooOpen { mode });
    }
    Ok(())
}

/// Reads the master key from `path`, which must belong to `server_uid` and be private to it.
pub fn from_file(path: &Path, server_uid: u32) -> Result<Key, KekError> {
    let file = std::fs::File::open(path).map_err(|e| KekError::Unreadable(e.kind()))?;
    check_file(&file.metadata().map_err(|e| KekError::Unreadable(e.kind()))?, server_uid)?;
    let mut raw = Zeroizing::new(Vec::new());
    file.take(MAX_MATERIAL_BYTES).read_to_end(&mut raw).map_err(|e| KekError::Unreadable(e.kind()))?;
    parse_material(&raw)
}

/// Runs `command` through `/bin/sh -c` and reads the master key from its standard output.
pub fn from_command(command: &str) -> Result<Key, KekError> {
    from_command_with_args(command, &[])
}

/// Runs `command` through `/bin/sh -c` with `args` as its positional parameters (`$1`, `$2`, ...), and reads the
/// key from its standard output. The arguments reach the command as they are: the shell never parses them, so a
/// value such as `x; rm -rf /` is one argument, not a command. (A tenant's own key: its id and key reference.)
pub fn from_command_with_args(command: &str, args: &[&str]) -> Result<Key, KekError> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .arg("tenant_guard")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| KekError::CommandNotStarted(e.kind()))?;
    let mut raw = Zeroizing::new(Vec::new());
    let read = child.stdout.take().expect("piped").take(MAX_MATERIAL_BYTES).read_to_end(&mut raw);
    let status = child.wait().map_err(|e| KekError::CommandNotStarted(e.kind()))?;
    if !status.success() {
        return Err(KekError::CommandFailed(status.code()));
    }
    read.map_err(|e| KekError::Unreadable(e.kind()))?;
    parse_material(&raw)
}

/// Words that, followed by `=` or `:` (or as a `--word` option), introduce a secret in a command line.
const SECRET_WORDS: [&str; 12] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "access_key",
    "credential",
    "authorization",
    "bearer",
];
/// A run of this many base64 or hex characters is treated as a literal secret.
const SECRET_RUN: usize = 32;

/// Whether a key command line looks like it carries a credential (so that readers of the setting would learn it):
/// `password=...`, `--token ...`, `VAULT_TOKEN=...`, a URL with a user and password, or a long literal run of
/// base64/hex. A heuristic for the audit: it never prints the command, only that it should be looked at.
pub fn looks_like_credential(command: &str) -> bool {
    let lower = command.to_ascii_lowercase();
    let named = SECRET_WORDS.iter().any(|w| {
        lower.match_indices(w).any(|(at, _)| {
            let after = lower[at + w.len()..].trim_start();
            let option = lower[..at].ends_with("--") || lower[..at].ends_with('-');
            after.starts_with('=') || after.starts_with(':') || (option && !after.is_empty())
        })
    });
    let url_userinfo = lower.split("://").skip(1).any(|rest| {
        let authority = rest.split(['/', ' ', '\'', '"']).next().unwrap_or("");
        authority.contains('@') && authority.split('@').next().is_some_and(|u| u.contains(':'))
    });
    // a long run of hex digits, or of base64 with both cases and digits (random bytes, not words)
    let literal = command
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_')))
        .filter(|run| run.len() >= SECRET_RUN && !run.contains("//"))
        .any(|run| {
            let hex = run.chars().all(|c| c.is_ascii_hexdigit());
            let mixed = run.chars().any(|c| c.is_ascii_uppercase())
                && run.chars().any(|c| c.is_ascii_lowercase())
                && run.chars().any(|c| c.is_ascii_digit());
            hex || mixed
        });
    named || url_userinfo || literal
}

/// Which master key: the current one, or the previous one during a master-key change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KekSlot {
    /// The key new data keys are wrapped with.
    Current,
    /// The key being replaced, which may still wrap some data keys.
    Previous,
}

impl KekSlot {
    /// The names of the two settings that configure this slot's provider: (file, command).
    pub fn settings(self) -> (&'static str, &'static str) {
        match self {
            KekSlot::Current => ("tenant_guard.kek_file", "tenant_guard.kek_command"),
            KekSlot::Previous => ("tenant_guard.kek_previous_file", "tenant_guard.kek_previous_command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose;
    use std::os::unix::fs::PermissionsExt;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn expected() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    fn uid() -> u32 {
        // the uid this test runs as: the owner of a file it creates
        let p = scratch("uid-probe", b"x", 0o600);
        let uid = std::fs::metadata(&p).unwrap().uid();
        std::fs::remove_file(p).unwrap();
        uid
    }

    fn scratch(name: &str, contents: &[u8], mode: u32) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("tenant_guard-kek-{}-{name}", std::process::id()));
        std::fs::write(&p, contents).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn parses_hex_and_base64_spellings() {
        let key = expected();
        for text in [
            HEX.to_string(),
            HEX.to_uppercase(),
            format!("  {HEX}\n"),
            general_purpose::STANDARD.encode(key),
            general_purpose::STANDARD_NO_PAD.encode(key),
            general_purpose::URL_SAFE.encode(key),
            format!("{}\n", general_purpose::URL_SAFE_NO_PAD.encode(key)),
        ] {
            assert_eq!(*parse_material(text.as_bytes()).unwrap(), key, "{text:?}");
        }
    }

    #[test]
    fn refuses_wrong_lengths_and_garbage() {
        for text in [
            "".to_string(),
            HEX[..62].to_string(),
            format!("{HEX}00"),
            general_purpose::STANDARD.encode([1u8; 31]),
            general_purpose::STANDARD.encode([1u8; 33]),
            "not a key at all".to_string(),
            format!("{} trailing", general_purpose::STANDARD.encode([1u8; 32])),
        ] {
            assert_eq!(parse_material(text.as_bytes()), Err(KekError::BadMaterial), "{text:?}");
        }
    }

    #[test]
    fn key_file_must_be_private_and_owned() {
        let me = uid();
        let good = scratch("good", HEX.as_bytes(), 0o600);
        assert_eq!(*from_file(&good, me).unwrap(), expected());
        let ro = scratch("ro", HEX.as_bytes(), 0o400);
        assert_eq!(*from_file(&ro, me).unwrap(), expected());
        let open = scratch("open", HEX.as_bytes(), 0o644);
        assert_eq!(from_file(&open, me), Err(KekError::TooOpen { mode: 0o644 }));
        assert!(KekError::TooOpen { mode: 0o644 }.to_string().contains("0644"));
        assert_eq!(from_file(&good, me + 1), Err(KekError::NotOwned));
        let missing = std::env::temp_dir().join("tenant_guard-kek-does-not-exist");
        assert_eq!(from_file(&missing, me), Err(KekError::Unreadable(std::io::ErrorKind::NotFound)));
        for p in [good, ro, open] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn key_command_output_is_the_key() {
        assert_eq!(*from_command(&format!("printf '%s\\n' {HEX}")).unwrap(), expected());
        assert_eq!(from_command("echo oops >&2; exit 3"), Err(KekError::CommandFailed(Some(3))));
        assert_eq!(from_command("kill -9 $$"), Err(KekError::CommandFailed(None)));
        assert_eq!(from_command("echo the-secret-output"), Err(KekError::BadMaterial));
    }

    #[test]
    fn messages_never_contain_material_or_output() {
        let errors = [
            from_command("echo the-secret-output").unwrap_err(),
            parse_material(b"the-secret-output").unwrap_err(),
            from_command("echo the-secret-output; exit 1").unwrap_err(),
        ];
        for e in errors {
            assert!(!e.to_string().contains("the-secret-output"), "{e}");
        }
    }

    #[test]
    fn credentials_in_key_commands_are_noticed() {
        for command in [
            "vault kv get -field=key secret/kek VAULT_TOKEN=s.abcd",
            "VAULT_TOKEN=s.abcdef /usr/local/bin/fetch-kek",
            "aws kms decrypt --password hunter2",
            "fetch --token abc",
            "curl -s https://kek:s3cr3t@kms.internal/v1/key",
            "curl -H 'Authorization: Bearer abc' https://kms.internal/key",
            "echo 5465737420717569636b206d6173746572206b65792c206e6f74207265616c21",
            "printf %s Zm9vYmFyQmF6UXV4MTIzNDU2Nzg5MEFCQ0RFRkdISUpL",
        ] {
            assert!(looks_like_credential(command), "{command}");
        }
        for command in [
            "/usr/local/bin/fetch-kek",
            "aws kms decrypt --ciphertext-blob fileb:///etc/tenant_guard/kek.enc --query Plaintext --output text",
            "vault kv get -field=key secret/tenant_guard/kek",
            "cat /etc/tenant_guard/master.key",
            "curl -s https://kms.internal/v1/keys/tenant-guard-master-key-2026",
        ] {
            assert!(!looks_like_credential(command), "{command}");
        }
    }
}

#[cfg(test)]
mod command_argument_tests {
    use super::*;

    const HEX: &str = "5465737420717569636b206d6173746572206b65792c206e6f74207265616c21";

    #[test]
    fn arguments_reach_the_command_as_positional_parameters_never_parsed() {
        let command = format!("test \"$1\" = tenant-1 && test \"$2\" = 'a b; touch /tmp/tg-never' && echo {HEX}");
        assert!(from_command_with_args(&command, &["tenant-1", "a b; touch /tmp/tg-never"]).is_ok());
        assert!(!std::path::Path::new("/tmp/tg-never").exists());
        assert_eq!(from_command_with_args(&command, &["tenant-2", "x"]).err(), Some(KekError::CommandFailed(Some(1))));
        // a revoked key: the provider fails, and says nothing but its status
        assert_eq!(from_command_with_args("exit 3", &["t", "k"]).err(), Some(KekError::CommandFailed(Some(3))));
    }
}
