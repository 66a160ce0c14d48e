//! Who may do what: authorisation from the peer's credentials (SO_PEERCRED).
//!
//! The policy ([`Policy::check`]) is pure; the system lookups (uid of a user
//! name, groups of a uid) are behind [`Accounts`], so tests run the real policy
//! with a fake account database.

use std::os::unix::net::UnixStream;

use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};

/// The process on the other end of the socket, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// Credentials of the peer of a connected Unix socket.
pub fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let c = getsockopt(stream, PeerCredentials).map_err(std::io::Error::from)?;
    Ok(Peer {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Verify `user` (whose uid is `uid`, if known).
    Verify { user: &'a str, uid: Option<u32> },
    /// Identify, list, enrol, remove, export, import.
    Admin,
    /// Door events.
    Subscribe,
    /// Daemon status (anyone who can reach the socket).
    Status,
}

/// The account database.
pub trait Accounts: Send + Sync {
    /// Uid of a login name.
    fn uid_of(&self, name: &str) -> Option<u32>;
    /// Gid of a group name.
    fn gid_of(&self, group: &str) -> Option<u32>;
    /// All groups of `uid` (primary `gid` included).
    fn groups_of(&self, uid: u32, gid: u32) -> Vec<u32>;
}

/// The system's accounts (NSS through nix).
pub struct SystemAccounts;

impl Accounts for SystemAccounts {
    fn uid_of(&self, name: &str) -> Option<u32> {
        nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    }

    fn gid_of(&self, group: &str) -> Option<u32> {
        nix::unistd::Group::from_name(group)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw())
    }

    fn groups_of(&self, uid: u32, gid: u32) -> Vec<u32> {
        let mut out = vec![gid];
        let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten();
        if let Some(u) = user {
            if let Ok(name) = std::ffi::CString::new(u.name) {
                if let Ok(gs) = nix::unistd::getgrouplist(&name, u.gid) {
                    out.extend(gs.into_iter().map(|g| g.as_raw()));
                }
            }
        }
        out
    }
}

/// Refusal, with a message for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

/// The authorisation policy.
pub struct Policy {
    pub admin_group: Option<String>,
    pub door_group: Option<String>,
    pub accounts: Box<dyn Accounts>,
}

impl Policy {
    fn in_group(&self, peer: &Peer, group: &Option<String>) -> bool {
        let Some(g) = group else { return false };
        let Some(gid) = self.accounts.gid_of(g) else {
            return false;
        };
        self.accounts.groups_of(peer.uid, peer.gid).contains(&gid)
    }

    /// May `peer` do `action`? Root may do everything.
    pub fn check(&self, peer: &Peer, action: &Action<'_>) -> Result<(), Denied> {
        if peer.uid == 0 {
            return Ok(());
        }
        let group_msg = |what: &str, g: &Option<String>| match g {
            Some(g) => format!("{what} needs root or membership of group {g:?}"),
            None => format!("{what} needs root (no group configured)"),
        };
        match action {
            Action::Status => Ok(()),
            Action::Admin => {
                if self.in_group(peer, &self.admin_group) {
                    Ok(())
                } else {
                    Err(Denied(group_msg("this request", &self.admin_group)))
                }
            }
            Action::Subscribe => {
                if self.in_group(peer, &self.door_group) || self.in_group(peer, &self.admin_group) {
                    Ok(())
                } else {
                    Err(Denied(group_msg("subscribe", &self.door_group)))
                }
            }
            Action::Verify { user, uid } => {
                let uid = uid.or_else(|| self.accounts.uid_of(user));
                if uid == Some(peer.uid) {
                    Ok(())
                } else {
                    Err(Denied(format!(
                        "uid {} may not verify {user:?} (only root or that user may)",
                        peer.uid
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake;
    impl Accounts for Fake {
        fn uid_of(&self, name: &str) -> Option<u32> {
            match name {
                "ann" => Some(1000),
                "bob" => Some(1001),
                _ => None,
            }
        }
        fn gid_of(&self, group: &str) -> Option<u32> {
            match group {
                "admins" => Some(50),
                "door" => Some(60),
                _ => None,
            }
        }
        fn groups_of(&self, uid: u32, gid: u32) -> Vec<u32> {
            match uid {
                1000 => vec![gid, 50],
                1002 => vec![gid, 60],
                _ => vec![gid],
            }
        }
    }

    fn peer(uid: u32) -> Peer {
        Peer {
            pid: 1,
            uid,
            gid: 100,
        }
    }

    #[test]
    fn the_policy() {
        let p = Policy {
            admin_group: Some("admins".into()),
            door_group: Some("door".into()),
            accounts: Box::new(Fake),
        };
        let v = |user| Action::Verify { user, uid: None };
        assert!(p.check(&peer(0), &Action::Admin).is_ok());
        assert!(p.check(&peer(0), &v("bob")).is_ok());
        assert!(p.check(&peer(1000), &Action::Admin).is_ok());
        assert!(p.check(&peer(1001), &Action::Admin).is_err());
        assert!(p.check(&peer(1002), &Action::Admin).is_err());
        assert!(p.check(&peer(1001), &v("bob")).is_ok());
        assert!(p.check(&peer(1001), &v("ann")).is_err());
        assert!(p.check(&peer(1001), &v("nobody")).is_err());
        // The gallery's uid for a user wins over the account database.
        let mapped = Action::Verify {
            user: "kiosk",
            uid: Some(1001),
        };
        assert!(p.check(&peer(1001), &mapped).is_ok());
        assert!(p.check(&peer(1002), &Action::Subscribe).is_ok());
        assert!(p.check(&peer(1000), &Action::Subscribe).is_ok());
        assert!(p.check(&peer(1001), &Action::Subscribe).is_err());
        assert!(p.check(&peer(1001), &Action::Status).is_ok());
        let none = Policy {
            admin_group: None,
            door_group: None,
            accounts: Box::new(Fake),
        };
        assert!(none.check(&peer(1000), &Action::Admin).is_err());
        assert!(none
            .check(&peer(1000), &Action::Admin)
            .unwrap_err()
            .0
            .contains("needs root"));
    }
}
