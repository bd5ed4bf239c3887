//! Against a real cluster (KUBECONFIG with the CRDs installed): `cargo test -p portico-operator
//! --test cluster -- --ignored`. No cluster runs on the project's machines; the mocked API
//! server tests in `src/` cover the same requests.

use portico_operator::controller::check_crds;

#[tokio::test]
#[ignore = "needs a cluster"]
async fn the_crds_are_installed_in_the_current_cluster() {
    let client = kube::Client::try_default()
        .await
        .expect("a kubeconfig or in-cluster config");
    check_crds(&client, None).await.expect("CRDs installed");
}
