//! Every guest in jobs-wasm/ must be exercised by a test: this module names each one's test.

use sluice_test_artifacts as guests;

/// The tests that exercise each guest package; adding a guest without adding it here fails.
const EXERCISED_BY: &[(&str, &str)] = &[
    (
        "catalogue-bomb",
        "sandbox::upload_refuses_a_catalogue_over_the_cap",
    ),
    (
        "classic",
        "compose::a_module_built_against_0_1_0_still_uploads_and_runs",
    ),
    ("composer", "compose::* and store::compose::*"),
    ("hello", "sandbox::hello_* and cli::*"),
    ("hostile", "sandbox::every_hostile_function_fails_alone"),
    (
        "pipeline",
        "compose::the_example_pipeline_ingests_transforms_and_stores",
    ),
    (
        "wrong-world",
        "sandbox::upload_rejects_a_component_of_another_world",
    ),
];

#[test]
fn every_guest_is_exercised_by_a_test() {
    for guest in guests::ALL {
        assert!(
            EXERCISED_BY.iter().any(|(name, _)| name == guest),
            "guest {guest} is built but no test exercises it; add one and list it here"
        );
    }
    for (name, _) in EXERCISED_BY {
        assert!(
            guests::ALL.contains(name),
            "{name} is listed but is not a guest any more"
        );
    }
}
