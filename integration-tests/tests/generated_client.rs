//! A Python client generated from the committed openapi.json (openapi-python-client, as the
//! README shows) registers, logs in with the OAuth form, refreshes, reads `/me`, revokes and
//! lists users against the real service: the document is good enough for a generator.

use integration_tests::{ServiceProcess, TestDatabase, openapi_python_client_venv};

#[tokio::test]
async fn a_client_generated_from_the_document_talks_to_the_service() {
    let venv = openapi_python_client_venv();
    let workdir =
        std::env::temp_dir().join(format!("iam-client-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&workdir).expect("workdir");
    let document = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.json");
    let generated = std::process::Command::new(venv.join("bin/openapi-python-client"))
        .args([
            "generate",
            "--path",
            document,
            "--meta",
            "none",
            "--output-path",
        ])
        .arg(workdir.join("iam_client"))
        .output()
        .expect("run openapi-python-client");
    let report = String::from_utf8_lossy(&generated.stdout).into_owned()
        + &String::from_utf8_lossy(&generated.stderr);
    assert!(generated.status.success(), "generation failed:\n{report}");
    // Its only acceptable warning is that ruff, the formatter it runs afterwards, is absent.
    assert!(
        !report.contains("Unable to") && !report.contains("removal of"),
        "the generator dropped part of the document:\n{report}"
    );

    let db = TestDatabase::create().await;
    let api = ServiceProcess::start(&db).await;
    let token = api.admin_token().await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/generated-client/use_client.py"
    );
    let output = tokio::process::Command::new(venv.join("bin/python"))
        .arg(script)
        .arg(api.url(""))
        .arg(&token)
        .env("PYTHONPATH", &workdir)
        .output()
        .await
        .expect("run the generated client");
    let _ = std::fs::remove_dir_all(&workdir);
    assert!(
        output.status.success(),
        "{}\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        api.logs()
    );
}
