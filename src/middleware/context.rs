//! [`MiddlewareContext`]: the typed per-call state the hooks of one pipeline call share,
//! and [`Extensions`], where each middleware keeps its own values under its own types
//! (tower/http style: a type is its own key, so two middlewares cannot collide and a value
//! cannot be read as the wrong type).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::ErrorAction;
use crate::clock::Nanos;
use crate::provider::{CompletionResponse, LLMProvider};

/// Values keyed by their type: at most one value per type.
#[derive(Default)]
pub struct Extensions {
    map: FxHashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl Extensions {
    /// Stores `value`, returning the value of the same type it replaces.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) -> Option<T> {
        self.map
            .insert(TypeId::of::<T>(), Box::new(value))
            .and_then(|old| old.downcast().ok().map(|b| *b))
    }

    /// The value of type `T`, if one is stored.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.map.get(&TypeId::of::<T>())?.downcast_ref()
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Any + Send + Sync>(&mut self) -> Option<&mut T> {
        self.map.get_mut(&TypeId::of::<T>())?.downcast_mut()
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&mut self) -> Option<T> {
        self.map
            .remove(&TypeId::of::<T>())
            .and_then(|b| b.downcast().ok().map(|b| *b))
    }

    /// How many values are stored.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is stored.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("len", &self.map.len())
            .finish()
    }
}

/// State shared by the hooks of one call, preserved from request to response, across
/// retries and fallbacks.
#[derive(Debug)]
pub struct MiddlewareContext {
    /// The id of the provider the current attempt goes to (changes on fallback).
    pub provider_id: String,
    /// The provider the current attempt goes to, set by the pipeline before each
    /// attempt's `on_request` hooks (`None` in a context made by hand for a hook alone).
    pub provider: Option<Arc<dyn LLMProvider>>,
    /// The model of the call's request (set by the pipeline before the first hook).
    pub model: String,
    /// When the call started, in the pipeline clock's nanoseconds.
    pub started_at: Nanos,
    /// Retries made so far against the current provider (0 on the first try; reset on
    /// fallback).
    pub attempt: u32,
    /// Providers already tried, in order (the current one last).
    pub tried: Vec<String>,
    /// Free-form string metadata for callers and logs, e.g. the request id.
    pub metadata: HashMap<String, String>,
    /// A response an `on_request` hook supplies (a cache hit): the provider is not called,
    /// the remaining `on_request` hooks are skipped and only the `on_response` hooks of the
    /// middlewares that ran see it.
    pub short_circuit: Option<CompletionResponse>,
    /// While `on_error` hooks run: the action a hook closer to the provider already chose
    /// for this error (`None` = all so far said `Propagate`). A hook whose action has a
    /// cost (a retry's wait, a credential refresh) skips it when this is set, since its
    /// own answer would be ignored.
    pub decided: Option<ErrorAction>,
    /// Each middleware's own per-call values, by type.
    pub extensions: Extensions,
}

impl MiddlewareContext {
    /// A context for a call to `provider_id` starting at `started_at` (nanoseconds).
    pub fn new(provider_id: impl Into<String>, started_at: Nanos) -> Self {
        let provider_id = provider_id.into();
        Self {
            tried: vec![provider_id.clone()],
            provider_id,
            provider: None,
            model: String::new(),
            started_at,
            attempt: 0,
            metadata: HashMap::new(),
            short_circuit: None,
            decided: None,
            extensions: Extensions::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Started(u64);
    #[derive(Debug, PartialEq)]
    struct Other(u64);

    #[test]
    fn each_type_is_its_own_slot() {
        let mut e = Extensions::default();
        assert_eq!(e.insert(Started(1)), None);
        assert_eq!(e.insert(Other(2)), None);
        assert_eq!(e.insert(Started(3)), Some(Started(1)));
        assert_eq!(e.get::<Started>(), Some(&Started(3)));
        e.get_mut::<Other>().expect("stored").0 = 5;
        assert_eq!(e.remove::<Other>(), Some(Other(5)));
        assert_eq!(e.remove::<Other>(), None);
        assert_eq!(e.len(), 1);
    }
}
