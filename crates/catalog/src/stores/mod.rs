//! [`Catalog`]: every catalog interface, implemented once over the
//! engine-neutral SQL layer, one module per store.

mod acls;
mod brokers;
mod credentials;
mod index;
mod offsets;
mod producers;
mod quotas;
mod replays;
mod topics;
mod txns;

use crate::postgres::{self, Heard, Listening, PgDb};
use crate::sql::Db;
use crate::sqlite::SqliteDb;
use crate::{schema, CatalogUrl, Result, SegmentRecord};
use std::sync::Arc;

/// The catalog over one engine.
pub struct Catalog {
    db: Arc<dyn Db>,
    url: CatalogUrl,
    /// Connection settings of a PostgreSQL catalog, for its listener.
    pg: Option<::postgres::Config>,
}

impl Catalog {
    /// Opens the catalog `url` names and brings its schema up to date.
    pub fn open(url: &CatalogUrl) -> Result<Arc<Catalog>> {
        let (db, pg): (Arc<dyn Db>, _) = match url {
            CatalogUrl::Sqlite(path) => (Arc::new(SqliteDb::open(path)?), None),
            CatalogUrl::Postgres(u) => {
                let db = PgDb::connect(u)?;
                let config = db.config().clone();
                (Arc::new(db), Some(config))
            }
        };
        Self::over(db, url.clone(), pg)
    }

    /// A catalog in a private in-memory SQLite database (tests).
    pub fn in_memory() -> Result<Arc<Catalog>> {
        Self::over(
            Arc::new(SqliteDb::in_memory()?),
            CatalogUrl::Sqlite(":memory:".into()),
            None,
        )
    }

    fn over(
        db: Arc<dyn Db>,
        url: CatalogUrl,
        pg: Option<::postgres::Config>,
    ) -> Result<Arc<Catalog>> {
        schema::migrate(&*db)?;
        Ok(Arc::new(Catalog { db, url, pg }))
    }

    /// The engine, for stores kept outside this crate (the schema registry's
    /// tables).
    pub fn db(&self) -> Arc<dyn Db> {
        self.db.clone()
    }

    pub fn url(&self) -> &CatalogUrl {
        &self.url
    }

    /// Whether other brokers may share this catalog.
    pub fn is_shared(&self) -> bool {
        self.url.is_shared()
    }

    /// Listens for other brokers' changes (see [`crate::changes`]); `None`
    /// for an engine only one broker uses.
    pub fn listen(&self, on: impl Fn(Heard) + Send + 'static) -> Result<Option<Listening>> {
        let Some(config) = &self.pg else {
            return Ok(None);
        };
        let channels = [crate::changes::DATA_CHANNEL, crate::changes::META_CHANNEL];
        Ok(Some(postgres::listen(config.clone(), &channels, on)?))
    }
}

const SEGMENT_COLUMNS: &str =
    "topic_id, partition, base_offset, last_offset, max_timestamp, object_key, position, length";

fn segment_from_row(r: &crate::sql::Row) -> Result<SegmentRecord> {
    Ok(SegmentRecord {
        topic: r.uuid(0)?,
        partition: r.int32(1)?,
        base_offset: r.int(2)?,
        last_offset: r.int(3)?,
        max_timestamp: r.int(4)?,
        object_key: r.text(5)?,
        position: u64::try_from(r.int(6)?).unwrap_or(0),
        length: u64::try_from(r.int(7)?).unwrap_or(0),
    })
}

fn segment_values(s: &SegmentRecord) -> Vec<crate::sql::Value> {
    vec![
        s.topic.to_string().into(),
        s.partition.into(),
        s.base_offset.into(),
        s.last_offset.into(),
        s.max_timestamp.into(),
        s.object_key.as_str().into(),
        s.position.into(),
        s.length.into(),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_engine_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::CatalogUrl::Sqlite(dir.path().join("catalog.db"));
        crate::conformance::run(&|| super::Catalog::open(&url).unwrap());
    }
}
