//! A pod's identity, as every part names it: one place, so that the key the shim's
//! Score carries, the key its Bind carries and the key the scorer's watch records agree.

use crate::{BindRequest, PodFacts};

/// The key a pod's placement is recorded under across Score, Bind and the watch: its UID,
/// or `namespace/name` for a pod sent without one (a scheduler simulator's).
pub fn key(uid: &str, namespace: &str, name: &str) -> String {
    if uid.is_empty() { display(namespace, name) } else { uid.to_owned() }
}

/// `namespace/name`, how logs and error messages name a pod.
pub fn display(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

impl PodFacts {
    /// See [`key`].
    pub fn key(&self) -> String {
        key(&self.uid, &self.namespace, &self.name)
    }

    /// See [`display`].
    pub fn display(&self) -> String {
        display(&self.namespace, &self.name)
    }

    /// The key of the pod's controller (a ReplicaSet, a StatefulSet...), whose replicas
    /// spread counts: its UID, or `kind/namespace/name` without one; empty for a bare pod.
    pub fn owner_key(&self) -> String {
        match &self.owner {
            Some(o) if !o.uid.is_empty() => o.uid.clone(),
            Some(o) if !o.name.is_empty() => format!("{}/{}/{}", o.kind, self.namespace, o.name),
            _ => String::new(),
        }
    }
}

impl BindRequest {
    /// See [`key`]: the same key the pod's Score recorded.
    pub fn pod_key(&self) -> String {
        key(&self.pod_uid, &self.pod_namespace, &self.pod_name)
    }

    /// See [`display`].
    pub fn pod_display(&self) -> String {
        display(&self.pod_namespace, &self.pod_name)
    }
}

/// The controlling owner reference of a pod's `ownerReferences` (the one marked
/// `controller: true`; an absent mark is not one), whatever type holds them, given how
/// to read the mark: the only owner that replica counts follow.
pub fn controller<'a, R>(refs: impl IntoIterator<Item = &'a R>, mark: impl Fn(&R) -> Option<bool>) -> Option<&'a R>
where
    R: 'a,
{
    refs.into_iter().find(|r| mark(r) == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Owner;

    #[test]
    fn score_and_bind_name_a_pod_alike() {
        let pod = PodFacts { name: "p".into(), namespace: "ns".into(), uid: "u1".into(), ..Default::default() };
        let bind =
            BindRequest { pod_name: "p".into(), pod_namespace: "ns".into(), pod_uid: "u1".into(), node: "n".into() };
        assert_eq!(pod.key(), bind.pod_key());
        assert_eq!(pod.key(), "u1");
        let bare = PodFacts { uid: String::new(), ..pod.clone() };
        assert_eq!(bare.key(), "ns/p");
        assert_eq!(bare.display(), "ns/p");
        assert_eq!(bare.owner_key(), "");
        let owned = PodFacts {
            owner: Some(Owner { kind: "ReplicaSet".into(), name: "web".into(), uid: String::new() }),
            ..pod
        };
        assert_eq!(owned.owner_key(), "ReplicaSet/ns/web");
    }
}
