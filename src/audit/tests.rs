//! The comparison against the in-memory store, where the registries the integration tests
//! start cannot go: referrers listed by a referrers API at both ends.

use std::collections::HashMap;
use std::sync::Arc;

use super::{AuditOptions, Auditor};
use crate::execute::memory::MemoryStores;
use crate::execute::tests::{blob, image, options, repo, run};
use crate::execute::tests_attached::{ARTIFACT, with_referrer};
use crate::inputs::mapping::parse_text;
use crate::model::attached::Kind;
use crate::plan::plan;
use crate::report::verified::{ImageCheck, ProblemKind};

const MAPPING: &str = "src.io/team/app:1 dst.io/x/app:1";

async fn audit(stores: &Arc<MemoryStores>) -> ImageCheck {
    let parsed = parse_text(&Arc::from("mapping"), MAPPING);
    let (plan, _) = plan(
        &crate::plan::expand_all(parsed.mappings, &HashMap::new()).mappings,
        &HashMap::new(),
    );
    let auditor = Auditor::new(
        stores.clone(),
        AuditOptions {
            filter_by_os: None,
            attached: true,
        },
    );
    let mut checks = auditor.audit(plan).await;
    assert_eq!(checks.len(), 1);
    checks.remove(0)
}

#[tokio::test]
async fn referrers_listed_by_the_api_at_both_ends_are_compared() {
    let (stores, img, referrer) = with_referrer(true);
    let outcomes = run(&stores, MAPPING, options()).await;
    assert!(outcomes[0].error.is_none(), "{:?}", outcomes[0].error);
    let dst = stores.store(repo("dst.io/x").registry());
    let writes = dst.writes().len();

    let check = audit(&stores).await;
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    assert_eq!(check.destination_digest.as_ref(), Some(&img.digest));
    assert_eq!(check.attached.len(), 1);
    assert_eq!(check.attached[0].kind, Kind::Referrer);
    assert_eq!(check.attached[0].digest, referrer.digest);
    assert_eq!(check.attached[0].artifact_type.as_deref(), Some(ARTIFACT));
    assert_eq!(dst.writes().len(), writes, "verify writes nothing");
}

#[tokio::test]
async fn a_referrer_the_destination_lacks_is_named() {
    let (stores, img, referrer) = with_referrer(true);
    // The image alone at the destination, put there by something else.
    let dst = stores.store(repo("dst.io/x").registry());
    let (config, layer) = (blob("config"), blob("layer"));
    assert_eq!(image(&[&config, &layer]).digest, img.digest);
    dst.seed(&repo("dst.io/x/app"), "1", &[&img], &[config, layer]);

    let check = audit(&stores).await;
    assert_eq!(check.problems.len(), 1, "{:?}", check.problems);
    let problem = &check.problems[0];
    assert_eq!(problem.kind, ProblemKind::AttachedMissing);
    let attachment = problem.attachment.as_ref().expect("the referrer");
    assert_eq!(attachment.digest, referrer.digest);
    assert_eq!(attachment.subject, img.digest);
    let expected = format!(
        "referrer {} ({ARTIFACT}) of {} is missing at dst.io/x/app",
        referrer.digest, img.digest
    );
    assert_eq!(problem.message, expected);
}
