//! A client's user, pool user, database and application name in one allocation, shared by
//! every client with the same four (the registry interns them): the console reads them,
//! nothing on the transaction path does, and an idle client should cost little.

/// The four names of one client, stored end to end.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ClientNames {
    text: Box<str>,
    /// Where `user`, `pool_user` and `database` end in `text` (the application name follows).
    ends: [u32; 3],
}

impl ClientNames {
    /// The names of a client logging in as `user` to `database`, drawing from `pool_user`'s
    /// pool.
    pub fn new(user: &str, pool_user: &str, database: &str, application_name: &str) -> Self {
        let parts = [user, pool_user, database, application_name];
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            text.push_str(p);
            if let Some(end) = ends.get_mut(i) {
                // Startup packets are bounded far below 4 GiB, so the offsets fit.
                *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
            }
        }
        Self {
            text: text.into_boxed_str(),
            ends,
        }
    }

    fn part(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        let end = self.ends.get(i).map_or(self.text.len(), |e| *e as usize);
        self.text.get(start..end).unwrap_or("")
    }

    /// The user the client logged in as.
    pub fn user(&self) -> &str {
        self.part(0)
    }

    /// The user of the pool the client draws from (the database's forced user, if any).
    pub fn pool_user(&self) -> &str {
        self.part(1)
    }

    /// The database the client asked for.
    pub fn database(&self) -> &str {
        self.part(2)
    }

    /// The client's `application_name` at login.
    pub fn application_name(&self) -> &str {
        self.part(3)
    }
}

#[cfg(test)]
mod tests {
    use super::ClientNames;

    #[test]
    fn each_name_comes_back_whole() {
        for (u, p, d, a) in [
            ("alice", "app", "shop", "psql"),
            ("", "", "", ""),
            ("ü", "", "db", ""),
            ("u", "u", "d", "a much longer application name"),
        ] {
            let n = ClientNames::new(u, p, d, a);
            assert_eq!(
                (n.user(), n.pool_user(), n.database(), n.application_name()),
                (u, p, d, a)
            );
        }
    }
}
