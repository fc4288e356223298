//! `SHOW MEM` in PgBouncer's columns (name, size, used, free, memtotal) for the records the
//! pooler keeps per object. PgBouncer lists its slab caches; pgsluice allocates each record
//! on its own (no slab, so `free` is always 0), and `size` is the record itself, not the
//! strings or buffers it points to.

use super::table::Table;
use super::Admin;
use crate::backend::clients::ClientInfo;
use crate::pool::Pool;
use crate::server::ServerConn;

impl Admin {
    pub(super) fn mem(&self) -> Table {
        let config = self.ctx.config();
        let pools = self.ctx.pools.all();
        let clients = self.ctx.clients.all().len();
        let servers: usize = pools.iter().map(|p| p.counts().1).sum();
        let mut t = Table::typed(&["name", "size", "used", "free", "memtotal"], "siiii");
        for (name, size, used) in [
            (
                "db_cache",
                size_of::<crate::config::DatabaseConfig>(),
                config.databases.len(),
            ),
            ("pool_cache", size_of::<Pool>(), pools.len()),
            ("client_cache", size_of::<ClientInfo>(), clients),
            ("server_cache", size_of::<ServerConn>(), servers),
        ] {
            t.text_row(&[
                name.to_string(),
                size.to_string(),
                used.to_string(),
                "0".to_string(),
                (size * used).to_string(),
            ]);
        }
        t
    }
}
