//go:build tools

// Package tools pins every Kubernetes command this module builds so that
// `go mod tidy` keeps the dependencies they need (staging modules resolved at
// the release version through the replace directives in go.mod).
//
// Control plane (hack/tools.sh): kube-apiserver, kube-controller-manager,
// kube-scheduler, kubectl. Node components for the kind node image
// (hack/kind/node-image.sh): kubelet, kubeadm, kube-proxy.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubeadm"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
