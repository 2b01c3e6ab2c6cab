//! Who may do what: one pure table, asked on every request and before every run.

use serde::{Deserialize, Serialize};

use crate::config::UsableBy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Contributor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Contributor => "contributor",
            Role::Admin => "admin",
        }
    }
}

/// What a request asks to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// See exports, runs, reports and connections (never secrets).
    See,
    /// Save, change or remove an export, plan it or run it, on a connection usable by
    /// `usable_by`.
    UseConnection(UsableBy),
    /// Add, change or remove a connection; give consent; set usable-by; authenticate.
    ManageConnections,
    /// Manage users and read the audit log.
    Administer,
}

impl Role {
    pub fn may(self, action: Action) -> bool {
        match action {
            Action::See => true,
            Action::UseConnection(UsableBy::AdminsAndContributors) => self >= Role::Contributor,
            Action::UseConnection(UsableBy::Admins) | Action::ManageConnections | Action::Administer => {
                self == Role::Admin
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table, row by row: viewer, contributor, admin.
    #[test]
    fn the_table_of_roles() {
        let rows = [
            (Action::See, [true, true, true]),
            (
                Action::UseConnection(UsableBy::AdminsAndContributors),
                [false, true, true],
            ),
            (Action::UseConnection(UsableBy::Admins), [false, false, true]),
            (Action::ManageConnections, [false, false, true]),
            (Action::Administer, [false, false, true]),
        ];
        for (action, allowed) in rows {
            for (role, may) in [Role::Viewer, Role::Contributor, Role::Admin].into_iter().zip(allowed) {
                assert_eq!(role.may(action), may, "{role:?} {action:?}");
            }
        }
    }
}
