// Package fencetest sets up the hub's access to members for tests and dev
// clusters: the policy that guards it (where the hub is installed without
// kustomize) and provider files with a test exec plugin.
package fencetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	clientauthenticationv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/cluster-inventory-api/pkg/access"
)

// ProviderName is the access provider ProviderFile configures.
const ProviderName = "fleet-test"

// ProviderFile writes a provider file (--clusterprofile-provider-file)
// whose exec plugin hands out status, and returns its path.
func ProviderFile(t testing.TB, status clientauthenticationv1.ExecCredentialStatus) string {
	t.Helper()
	dir := t.TempDir()
	cred := clientauthenticationv1.ExecCredential{Status: &status}
	cred.APIVersion, cred.Kind = "client.authentication.k8s.io/v1", "ExecCredential"
	data, err := json.Marshal(cred)
	if err != nil {
		t.Fatal(err)
	}
	credPath, plugin := filepath.Join(dir, "credential.json"), filepath.Join(dir, "plugin.sh")
	if err := os.WriteFile(credPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(plugin, []byte("#!/bin/sh\nexec cat "+credPath+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := access.New([]access.Provider{{Name: ProviderName, ExecConfig: &clientcmdapi.ExecConfig{
		APIVersion: "client.authentication.k8s.io/v1", Command: plugin, InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}})
	data, err = json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "providers.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// AccessTo lists the provider the hub knows, reaching server.
func AccessTo(server string, ca []byte) []clusterinventory.AccessProvider {
	return []clusterinventory.AccessProvider{{Name: ProviderName, Cluster: clientcmdv1.Cluster{Server: server, CertificateAuthorityData: ca}}}
}
