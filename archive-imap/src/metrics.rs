//! IMAP commands counted by name through the `metrics` facade (a no-op unless the binary
//! installed a recorder). The label set is fixed: the names of the commands imap-codec
//! parses, and `other` for every line it could not (unknown commands, bad syntax, lines over
//! the limits), so no client can grow it. Handles are registered once per server: counting a
//! command is a short linear search over static names and an atomic add.

use metrics::Counter;

/// Counter: IMAP commands received, by `command` (lower case; `uid fetch` counts as fetch).
pub const COMMANDS: &str = "mailvault_imap_commands_total";

/// Every name `CommandBody::name` can return, in lower case.
const NAMES: &[(&str, &str)] = &[
    ("CAPABILITY", "capability"),
    ("NOOP", "noop"),
    ("LOGOUT", "logout"),
    ("STARTTLS", "starttls"),
    ("AUTHENTICATE", "authenticate"),
    ("LOGIN", "login"),
    ("SELECT", "select"),
    ("SORT", "sort"),
    ("THREAD", "thread"),
    ("UNSELECT", "unselect"),
    ("EXAMINE", "examine"),
    ("CREATE", "create"),
    ("DELETE", "delete"),
    ("RENAME", "rename"),
    ("SUBSCRIBE", "subscribe"),
    ("UNSUBSCRIBE", "unsubscribe"),
    ("LIST", "list"),
    ("LSUB", "lsub"),
    ("STATUS", "status"),
    ("APPEND", "append"),
    ("CHECK", "check"),
    ("CLOSE", "close"),
    ("EXPUNGE", "expunge"),
    ("SEARCH", "search"),
    ("FETCH", "fetch"),
    ("STORE", "store"),
    ("COPY", "copy"),
    ("IDLE", "idle"),
    ("ENABLE", "enable"),
    ("COMPRESS", "compress"),
    ("GETQUOTA", "getquota"),
    ("GETQUOTAROOT", "getquotaroot"),
    ("SETQUOTA", "setquota"),
    ("MOVE", "move"),
    ("ID", "id"),
    ("SETMETADATA", "setmetadata"),
    ("GETMETADATA", "getmetadata"),
    ("NAMESPACE", "namespace"),
];

/// Describes the metrics above (HELP text); call once after installing a recorder.
pub fn describe() {
    metrics::describe_counter!(
        COMMANDS,
        "IMAP commands received, by command name (other: lines that did not parse as a command)."
    );
}

/// The command counters of one server.
pub(crate) struct Commands {
    known: Vec<(&'static str, Counter)>,
    other: Counter,
}

impl Commands {
    pub fn new() -> Commands {
        Commands {
            known: NAMES
                .iter()
                .map(|(name, label)| (*name, metrics::counter!(COMMANDS, "command" => *label)))
                .collect(),
            other: metrics::counter!(COMMANDS, "command" => "other"),
        }
    }

    /// Counts one command; `name` as `CommandBody::name` spells it.
    pub fn count(&self, name: &str) {
        match self.known.iter().find(|(known, _)| *known == name) {
            Some((_, counter)) => counter.increment(1),
            None => self.other.increment(1),
        }
    }

    /// Counts a line that was no command the server could parse.
    pub fn count_other(&self) {
        self.other.increment(1);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn labels_are_the_names_in_lower_case() {
        for (name, label) in super::NAMES {
            assert_eq!(name.to_ascii_lowercase(), *label);
        }
    }
}
