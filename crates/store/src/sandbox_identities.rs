//! Each organization's sandbox slot: a small number, unique across the installation, from
//! which the host uids of its sandboxes are derived. Kept in the database so that every server
//! process of an installation gives an organization the same uids.

use sqlx::Row;
use toolsmith_domain::OrgId;

use crate::{Store, StoreError};

impl Store {
    /// The sandbox slot of `org_id`, allocated (the lowest unused number from 1) on first use.
    pub async fn sandbox_slot(&self, org_id: &OrgId) -> Result<u32, StoreError> {
        // Two processes allocating at once may pick the same number; the unique index refuses
        // the second, which then reads what the first wrote or tries the next number. (`WHERE
        // true` tells SQLite's parser that `ON CONFLICT` belongs to the insert.)
        for _ in 0..16 {
            if let Some(row) = sqlx::query("SELECT slot FROM sandbox_identities WHERE org_id = $1")
                .bind(org_id.as_str())
                .fetch_optional(&self.db.read)
                .await?
            {
                return slot_of(row.try_get::<i64, _>("slot")?);
            }
            let inserted = sqlx::query(
                "INSERT INTO sandbox_identities (org_id, slot) \
                 SELECT $1, COALESCE(MAX(slot), 0) + 1 FROM sandbox_identities WHERE true \
                 ON CONFLICT DO NOTHING RETURNING slot",
            )
            .bind(org_id.as_str())
            .fetch_optional(&self.db.write)
            .await;
            match inserted {
                Ok(Some(row)) => return slot_of(row.try_get::<i64, _>("slot")?),
                Ok(None) | Err(sqlx::Error::Database(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Corrupt("could not allocate a sandbox slot".into()))
    }
}

fn slot_of(slot: i64) -> Result<u32, StoreError> {
    u32::try_from(slot).map_err(|_| StoreError::Corrupt(format!("sandbox slot {slot} is out of range")))
}
