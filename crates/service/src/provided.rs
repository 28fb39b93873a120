//! What services offer each other, wired by the node.
//!
//! A service that needs another (the gateway reads torrents) declares a small trait in
//! its own crate; `crates/node` implements it over the provider's handle and puts it
//! here once the provider has started; the consumer, started after it, takes it from
//! [`crate::ServiceContext::provided`]. So no service crate imports another, and a
//! consumer whose provider is disabled learns so at start.

use std::any::{Any, TypeId};
use std::collections::HashMap;

/// Values by type: at most one of each.
#[derive(Default)]
pub struct Provided {
    map: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Provided {
    /// Offers `value` to services started from now on (replacing one of its type).
    pub fn insert<T: Any + Send + Sync + Clone>(&mut self, value: T) {
        self.map.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// The value of type `T`, if a started service offers one.
    pub fn get<T: Any + Clone>(&self) -> Option<T> {
        self.map
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    trait Source: Send + Sync {
        fn name(&self) -> &'static str;
    }
    struct A;
    impl Source for A {
        fn name(&self) -> &'static str {
            "a"
        }
    }

    #[test]
    fn a_trait_object_goes_in_and_comes_out_by_its_type() {
        let mut p = Provided::default();
        assert!(p.get::<Arc<dyn Source>>().is_none());
        p.insert::<Arc<dyn Source>>(Arc::new(A));
        assert_eq!(p.get::<Arc<dyn Source>>().map(|s| s.name()), Some("a"));
        assert!(p.get::<u32>().is_none());
    }
}
