//! Values that must never reach a log line.
//!
//! A tool's environment holds its decrypted secrets, and the server's own settings for reaching
//! a package index may carry credentials (`https://user:token@mirror/simple`, a proxy with a
//! password). Every field that can hold such values is a [`Secret`]: its `Debug` says how many
//! values it holds and nothing else, so a struct can derive `Debug` and be logged with `{:?}`
//! without a hand-written impl that leaves the right fields out.

use std::collections::BTreeMap;
use std::fmt;

/// A value whose content `Debug` never shows: it prints `<redacted N>`, where N is the number
/// of values held (the entries of a list or map, 1 for a single string). The content is read
/// with [`Secret::expose`], which names every place that uses it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself, for the code that must use it (never for formatting).
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// The value itself, to change it in place.
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }

    /// The value itself, unwrapped.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

/// Collecting into a secret collects into the value it wraps, so that a secret list is built
/// as any list is.
impl<A, T: FromIterator<A>> FromIterator<A> for Secret<T> {
    fn from_iter<I: IntoIterator<Item = A>>(items: I) -> Secret<T> {
        Secret(items.into_iter().collect())
    }
}

/// How many values a secret holds: the one thing about it its `Debug` shows.
pub trait SecretValues {
    /// The number of values.
    fn count(&self) -> usize;
}

impl SecretValues for String {
    fn count(&self) -> usize {
        1
    }
}

impl<T> SecretValues for Vec<T> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<K, V> SecretValues for BTreeMap<K, V> {
    fn count(&self) -> usize {
        self.len()
    }
}

impl<T: SecretValues> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {}>", self.0.count())
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::pool::VersionRuntime;
    use crate::zygote::{InvocationLimits, ZygoteConfig};
    use crate::{Identity, Network, Sandbox};

    const SECRET: &str = "sk-live-7f3e9a41";
    /// A non-secret env var's value: not a secret, but the tool's configuration, kept out too.
    const VALUE: &str = "https://weather.example/v2";

    fn env() -> Secret<Vec<(String, String)>> {
        Secret::new(vec![("API_KEY".to_owned(), SECRET.to_owned()), ("API_BASE".to_owned(), VALUE.to_owned())])
    }

    #[test]
    fn debug_shows_the_count_and_nothing_else() {
        let env = env();
        for text in [format!("{env:?}"), format!("{env:#?}")] {
            assert_eq!(text, "<redacted 2>");
        }
        assert_eq!(format!("{:?}", Secret::new(SECRET.to_owned())), "<redacted 1>");
        assert_eq!(format!("{:?}", Secret::new(Vec::<String>::new())), "<redacted 0>");
        assert_eq!(env.expose()[0].1, SECRET, "the value itself is kept");
    }

    #[test]
    fn no_type_that_holds_a_tools_environment_shows_it() {
        let runtime = VersionRuntime {
            project: PathBuf::from("/artifacts/abc"),
            venv: PathBuf::from("/envs/acme/def"),
            base_prefix: PathBuf::from("/usr"),
            entrypoint: "weather.tool:run".to_owned(),
            takes_context: false,
            env: env(),
            identity: Identity::NOBODY,
            secrets: Secret::new(vec![SECRET.to_owned()]),
        };
        let config = ZygoteConfig {
            project: runtime.project.clone(),
            venv: runtime.venv.clone(),
            base_prefix: runtime.base_prefix.clone(),
            harness_dir: PathBuf::from("/runtime/harness"),
            entrypoint: runtime.entrypoint.clone(),
            takes_context: false,
            env: env(),
            network: Network::Off,
            identity: Identity::NOBODY,
            tmp_bytes: 1 << 20,
            limits: InvocationLimits::default(),
            cgroup: None,
            secrets: runtime.secrets.clone(),
            start_timeout: Duration::from_secs(1),
        };
        let sandbox = Sandbox::new().env("API_KEY", SECRET).env("API_BASE", VALUE);
        for text in [
            format!("{runtime:?}"),
            format!("{runtime:#?}"),
            format!("{config:?}"),
            format!("{config:#?}"),
            format!("{sandbox:?}"),
            format!("{sandbox:#?}"),
        ] {
            assert!(!text.contains(SECRET) && !text.contains(VALUE), "{text}");
            assert!(text.contains("<redacted 2>"), "the environment is there, as a count: {text}");
            assert!(text.contains("entrypoint") || text.contains("mounts"), "the rest is shown: {text}");
        }
    }
}
