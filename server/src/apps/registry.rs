//! The in-memory view of the apps table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{App, AppStore, AppStoreError};

#[derive(Default)]
struct Snapshot {
    by_id: HashMap<String, Arc<App>>,
    by_key: HashMap<String, Arc<App>>,
}

/// Apps by id and by key, answered from memory and refreshed from the database by
/// [`AppRegistry::reload`].
#[derive(Clone)]
pub struct AppRegistry {
    store: AppStore,
    snapshot: Arc<RwLock<Arc<Snapshot>>>,
}

impl AppRegistry {
    /// Loads every app from `store`.
    pub async fn load(store: AppStore) -> Result<Self, AppStoreError> {
        let registry = Self {
            store,
            snapshot: Default::default(),
        };
        registry.reload().await?;
        Ok(registry)
    }

    pub fn store(&self) -> &AppStore {
        &self.store
    }

    /// Re-reads the table and returns the apps whose row changed or disappeared, as
    /// `(old, new)` pairs where `new` is `None` for a deleted app.
    pub async fn reload(&self) -> Result<Vec<(Arc<App>, Option<Arc<App>>)>, AppStoreError> {
        let apps = self.store.list().await?;
        let mut next = Snapshot::default();
        for app in apps {
            let app = Arc::new(app);
            next.by_key.insert(app.key.clone(), app.clone());
            next.by_id.insert(app.id.clone(), app);
        }
        let previous = self.current();
        let mut changed = Vec::new();
        for (id, old) in &previous.by_id {
            match next.by_id.get(id) {
                Some(new) if new.as_ref() == old.as_ref() => {}
                new => changed.push((old.clone(), new.cloned())),
            }
        }
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        Ok(changed)
    }

    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn by_key(&self, key: &str) -> Option<Arc<App>> {
        self.current().by_key.get(key).cloned()
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<App>> {
        self.current().by_id.get(id).cloned()
    }
}
