// Package singlecluster proves the spoke alone is a drop-in JobSet controller
// for one cluster (design invariant 4), on a full kwok cluster: etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler, and the kwok
// controller as the kubelet of fake nodes, driven by the stages in
// e2e/kwok/stages.yaml.
//
// The tests install the JobSet CRD and the admission webhooks as a user would,
// run the JobSet reconciler and the webhooks in the test process (as the
// agent does, with the agent's RBAC), and drive the cluster with kubectl and
// the JobSets from examples/.
package singlecluster
