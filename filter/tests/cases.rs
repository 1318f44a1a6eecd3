//! Runs every policy case in `tests/cases/*.yaml` through the filter core and checks the
//! decision (and status, reason, raw result where the case says).

mod support;

use support::cases;

#[test]
fn every_yaml_policy_case_gives_the_wanted_decision() {
    let dir = cases::workspace_root().join("filter/tests/cases");
    let files = cases::case_files(&dir).unwrap();
    assert!(!files.is_empty(), "no case files in {}", dir.display());
    let mut failures = Vec::new();
    let mut count = 0;
    for file in files {
        for case in cases::load(&file).unwrap() {
            count += 1;
            let name = format!(
                "{}: {}",
                file.file_name().unwrap().to_string_lossy(),
                case.note
            );
            match case.run() {
                Ok(outcome) => {
                    if let Err(problem) = case.check(&outcome) {
                        failures.push(format!("{name}: {problem}"));
                    }
                }
                Err(error) => failures.push(format!("{name}: {error:#}")),
            }
        }
    }
    assert!(count >= 20, "only {count} cases");
    assert!(
        failures.is_empty(),
        "{} of {count} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
