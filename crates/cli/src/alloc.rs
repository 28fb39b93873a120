//! The program's allocator: mimalloc, without transparent huge pages.
//!
//! Measured against glibc's malloc (docs/architecture.md, "Crates"): small messages
//! about 1.6x as many per second, 64 KiB messages about 1.2x, JSON-RPC intake about 1.4x. mimalloc's own default
//! advises its arenas as huge pages; on this kernel that had the 64 KiB run zeroing 2 MiB
//! pages for 17% of its time, hence `no_thp`.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Gives memory the allocator holds free back to the system now (it otherwise waits
/// about a second), so that a measurement of resident memory that follows sees what
/// is in use, not what earlier work left.
pub fn release_free_memory() {
    // SAFETY: mi_collect only frees what mimalloc holds unused; it has no preconditions.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
