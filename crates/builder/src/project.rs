//! The tool project contract: what `pyproject.toml` must say.
//!
//! ```toml
//! [project]
//! name = "get_weather"
//! requires-python = ">=3.11"
//! dependencies = ["httpx>=0.27"]
//!
//! [tool.toolsmith]
//! entrypoint = "get_weather.tool:run"        # module:function
//! envvars = ["WEATHER_API_BASE"]              # required non-secret env vars
//! secret_envvars = ["WEATHER_API_KEY"]        # required secret env vars
//! ```

use toolsmith_domain::EnvVarName;

/// What a project declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSpec {
    /// `[project] name`.
    pub name: String,
    /// `[tool.toolsmith] entrypoint`, `module:function`.
    pub entrypoint: String,
    /// Required non-secret env vars.
    pub envvars: Vec<String>,
    /// Required secret env vars.
    pub secret_envvars: Vec<String>,
}

impl ProjectSpec {
    /// Reads a `pyproject.toml`; the error is a sentence for the tool author.
    pub fn parse(text: &str) -> Result<ProjectSpec, String> {
        let doc: toml::Table =
            text.parse().map_err(|e: toml::de::Error| format!("pyproject.toml is not valid TOML: {}", e.message()))?;
        let project = doc.get("project").and_then(|p| p.as_table()).ok_or("pyproject.toml has no [project] table")?;
        let name = project.get("name").and_then(|n| n.as_str()).ok_or("[project] has no name")?.to_owned();
        let tool = doc
            .get("tool")
            .and_then(|t| t.get("toolsmith"))
            .and_then(|t| t.as_table())
            .ok_or("pyproject.toml has no [tool.toolsmith] table; it must name the entrypoint")?;
        let entrypoint = tool
            .get("entrypoint")
            .and_then(|e| e.as_str())
            .ok_or("[tool.toolsmith] has no entrypoint (for example entrypoint = \"my_tool.tool:run\")")?
            .trim()
            .to_owned();
        let valid_entrypoint = entrypoint.split_once(':').is_some_and(|(module, function)| {
            let ident = |s: &str| {
                !s.is_empty()
                    && !s.starts_with(|c: char| c.is_ascii_digit())
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            module.split('.').all(ident) && ident(function)
        });
        if !valid_entrypoint {
            return Err(format!(
                "[tool.toolsmith] entrypoint {entrypoint:?} must have the form package.module:function"
            ));
        }
        let names = |key: &str| -> Result<Vec<String>, String> {
            let Some(value) = tool.get(key) else { return Ok(Vec::new()) };
            let items = value.as_array().ok_or(format!("[tool.toolsmith] {key} must be a list of names"))?;
            let mut out = Vec::new();
            for item in items {
                let raw = item.as_str().ok_or(format!("[tool.toolsmith] {key} must be a list of names"))?;
                let name = EnvVarName::parse(raw)
                    .map_err(|_| format!("[tool.toolsmith] {key}: {raw:?} is not a valid name (^[A-Z_][A-Z0-9_]*$)"))?;
                out.push(name.as_str().to_owned());
            }
            out.sort();
            out.dedup();
            Ok(out)
        };
        let envvars = names("envvars")?;
        let secret_envvars = names("secret_envvars")?;
        if let Some(both) = envvars.iter().find(|n| secret_envvars.contains(n)) {
            return Err(format!("[tool.toolsmith] {both} is listed both in envvars and in secret_envvars"));
        }
        Ok(ProjectSpec { name, entrypoint, envvars, secret_envvars })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract() {
        let spec = ProjectSpec::parse(
            "[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w.tool:run\"\nenvvars = [\"B\", \"A\"]\nsecret_envvars = [\"KEY\"]\n",
        )
        .unwrap();
        assert_eq!(spec.entrypoint, "w.tool:run");
        assert_eq!(spec.envvars, ["A", "B"]);
        assert_eq!(spec.secret_envvars, ["KEY"]);
        let minimal =
            ProjectSpec::parse("[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w:run\"\n").unwrap();
        assert!(minimal.envvars.is_empty());
    }

    #[test]
    fn mistakes_are_explained() {
        for (text, needle) in [
            ("not toml [", "not valid TOML"),
            ("[tool.toolsmith]\nentrypoint = \"a:b\"\n", "no [project]"),
            ("[project]\nname = \"w\"\n", "no [tool.toolsmith]"),
            ("[project]\nname = \"w\"\n[tool.toolsmith]\n", "no entrypoint"),
            ("[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w.tool\"\n", "package.module:function"),
            ("[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w:1run\"\n", "package.module:function"),
            ("[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w:run\"\nenvvars = [\"lower\"]\n", "not a valid name"),
            ("[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w:run\"\nenvvars = \"A\"\n", "list of names"),
            ("[project]\nname = \"w\"\n[tool.toolsmith]\nentrypoint = \"w:run\"\nenvvars = [\"A\"]\nsecret_envvars = [\"A\"]\n", "both"),
        ] {
            let err = ProjectSpec::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
