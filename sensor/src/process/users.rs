//! uid → user name (`user.name`) from the host's passwd file, read once at
//! start-up.

use std::{collections::HashMap, path::Path};

/// uid → user name from the host's passwd file.
#[derive(Debug, Default)]
pub struct Users {
    names: HashMap<u32, String>,
}

impl Users {
    pub fn load(passwd: &Path) -> Users {
        let text = std::fs::read_to_string(passwd).unwrap_or_default();
        Users::parse(&text)
    }

    pub fn parse(text: &str) -> Users {
        let names = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let uid = f.nth(1)?.parse().ok()?;
                Some((uid, name.to_string()))
            })
            .collect();
        Users { names }
    }

    pub fn name(&self, uid: u32) -> Option<String> {
        self.names.get(&uid).cloned()
    }
}
