//! `container.*` and `k8s.*`: what enrichment learned about the event's
//! container and, inside Kubernetes, its pod (labels, workload, service
//! account). Missing before enrichment and outside containers.

use std::borrow::Cow;

use super::{opt_str, Field, FieldArg, FieldId, Value};
use crate::event::Event;

/// Read a `container.*` / `k8s.*` field.
#[inline]
pub(super) fn extract<'a>(field: &Field, ev: &'a Event) -> Value<'a> {
    use FieldId as F;
    match field.info.id {
        F::ContainerId => opt_str(ev.container.as_ref().map(|c| c.id.as_str())),
        F::ContainerName => opt_str(ev.container.as_ref().and_then(|c| c.name.as_deref())),
        F::ContainerImage => opt_str(ev.container.as_ref().and_then(|c| c.image.as_deref())),
        F::ContainerImageRepository => opt_str(ev.container.as_ref().and_then(|c| {
            c.image_repository
                .as_deref()
                .or_else(|| c.image.as_deref().map(|i| split_image(i).0))
        })),
        F::ContainerImageTag => opt_str(ev.container.as_ref().and_then(|c| {
            c.image_tag
                .as_deref()
                .or_else(|| c.image.as_deref().and_then(|i| split_image(i).1))
        })),
        F::ContainerImageDigest => opt_str(
            ev.container
                .as_ref()
                .and_then(|c| c.image_digest.as_deref()),
        ),
        F::ContainerPrivileged => ev
            .container
            .as_ref()
            .and_then(|c| c.privileged)
            .map(Value::Bool)
            .unwrap_or(Value::Missing),
        F::ContainerType => opt_str(ev.container.as_ref().and_then(|c| c.runtime.as_deref())),
        F::ContainerFullId => opt_str(
            ev.container
                .as_ref()
                .map(|c| c.full_id.as_str())
                .filter(|s| !s.is_empty()),
        ),
        F::ContainerStartTs => ev
            .container
            .as_ref()
            .and_then(|c| c.start_ts)
            .and_then(|t| i64::try_from(t).ok())
            .map(Value::Int)
            .unwrap_or(Value::Missing),
        F::K8sNsName => opt_str(pod(ev).and_then(|p| p.namespace.as_deref())),
        F::K8sPodName => opt_str(pod(ev).and_then(|p| p.name.as_deref())),
        F::K8sPodUid => opt_str(pod(ev).map(|p| p.uid.as_str())),
        F::K8sPodLabel => match (pod(ev), field.arg) {
            (Some(p), FieldArg::Key(k)) => opt_str(p.labels.get(k).map(String::as_str)),
            _ => Value::Missing,
        },
        F::K8sPodLabels => match pod(ev) {
            Some(p) if !p.labels.is_empty() => Value::Str(Cow::Owned(
                p.labels
                    .iter()
                    .map(|(k, v)| format!("{k}:{v}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            )),
            _ => Value::Missing,
        },
        F::K8sWorkloadKind => opt_str(pod(ev).and_then(|p| p.workload_kind.as_deref())),
        F::K8sWorkloadName => opt_str(pod(ev).and_then(|p| p.workload_name.as_deref())),
        F::K8sSaName => opt_str(pod(ev).and_then(|p| p.service_account.as_deref())),
        // Other classes' fields: never dispatched here.
        _ => Value::Missing,
    }
}

fn pod(ev: &Event) -> Option<&crate::event::Pod> {
    ev.container.as_ref().and_then(|c| c.pod.as_deref())
}

fn split_image(image: &str) -> (&str, Option<&str>) {
    let image = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' separates the tag (a ':' before it is a registry port).
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(i) => (&image[..slash + i], Some(&image[slash + i + 1..])),
        None => (image, None),
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{ev, get};
    use super::split_image;

    #[test]
    fn host_event_has_no_container() {
        assert_eq!(get("container.id", None, &ev()), "<NA>");
    }

    #[test]
    fn image_split() {
        assert_eq!(
            split_image("docker.io/library/nginx:1.25"),
            ("docker.io/library/nginx", Some("1.25"))
        );
        assert_eq!(
            split_image("localhost:5000/app"),
            ("localhost:5000/app", None)
        );
        assert_eq!(split_image("app@sha256:abc"), ("app", None));
    }

    #[test]
    fn k8s_pod_labels_workload_and_service_account() {
        let mut e = ev();
        assert_eq!(get("k8s.pod.labels", None, &e), "<NA>");
        assert_eq!(get("k8s.workload.kind", None, &e), "<NA>");
        let pod = crate::event::Pod {
            uid: "u".into(),
            labels: [("tier", "web"), ("app", "api")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            workload_kind: Some("Deployment".into()),
            workload_name: Some("api".into()),
            service_account: Some("api-sa".into()),
            ..Default::default()
        };
        e.container = Some(std::sync::Arc::new(crate::event::Container {
            id: "0123456789ab".into(),
            pod: Some(std::sync::Arc::new(pod)),
            ..Default::default()
        }));
        assert_eq!(get("k8s.pod.labels", None, &e), "app:api, tier:web");
        assert_eq!(get("k8s.workload.kind", None, &e), "Deployment");
        assert_eq!(get("k8s.workload.name", None, &e), "api");
        assert_eq!(get("k8s.sa.name", None, &e), "api-sa");
    }
}
