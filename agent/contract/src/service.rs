//! The service commands a deployment can run on a host's active version instead of
//! installing one (`instream service ACTION`, the agent's `--service ACTION`).

/// One service command; each runs the product's hook of the same name (`check` runs
/// `health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceAction {
    /// Run the `start` hook.
    Start,
    /// Run the `stop` hook.
    Stop,
    /// Run the `restart` hook (or `stop` then `start`).
    Restart,
    /// Run the `status` hook.
    Status,
    /// Run the `health` hook.
    Check,
}

impl ServiceAction {
    /// Every action, in the order the CLI lists them.
    pub const ALL: [ServiceAction; 5] = [
        ServiceAction::Start,
        ServiceAction::Stop,
        ServiceAction::Restart,
        ServiceAction::Status,
        ServiceAction::Check,
    ];

    /// The command-line word.
    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceAction::Start => "start",
            ServiceAction::Stop => "stop",
            ServiceAction::Restart => "restart",
            ServiceAction::Status => "status",
            ServiceAction::Check => "check",
        }
    }

    /// The action named by its command-line word.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::str::FromStr for ServiceAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s).ok_or_else(|| {
            format!("unknown service action {s:?} (start, stop, restart, status, check)")
        })
    }
}

impl std::fmt::Display for ServiceAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_back_from_its_word() {
        for a in ServiceAction::ALL {
            assert_eq!(a.as_str().parse::<ServiceAction>(), Ok(a));
        }
        assert!("reload".parse::<ServiceAction>().is_err());
    }
}
