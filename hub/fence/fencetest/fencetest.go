// Package fencetest sets up the hub's access to members for tests and dev
// clusters: the policy that guards it (where the hub is installed without
// kustomize) and provider files with a test exec plugin.
package fencetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthenticationv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	clientcmdv1 "k8s.io/client-go/tools/clientcmd/api/v1"
	clusterinventory "sigs.k8s.io/cluster-inventory-api/apis/v1alpha1"
	"sigs.k8s.io/cluster-inventory-api/pkg/access"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// AccessPolicyManifest is the policy that keeps agents from changing their
// ClusterProfile's access providers, relative to the repository root.
var AccessPolicyManifest = filepath.Join("config", "hub", "access-policy.yaml")

// InstallAccessPolicy creates (or replaces) the ValidatingAdmissionPolicy
// and binding of AccessPolicyManifest under repoRoot on the hub.
func InstallAccessPolicy(ctx context.Context, hub client.Client, repoRoot string) error {
	path := filepath.Join(repoRoot, AccessPolicyManifest)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		var head metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		var obj client.Object
		switch head.Kind {
		case "ValidatingAdmissionPolicy":
			obj = &admissionv1.ValidatingAdmissionPolicy{}
		case "ValidatingAdmissionPolicyBinding":
			obj = &admissionv1.ValidatingAdmissionPolicyBinding{}
		default:
			return fmt.Errorf("%s: unexpected kind %q", path, head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := createOrReplace(ctx, hub, obj); err != nil {
			return fmt.Errorf("%s %s: %w", head.Kind, obj.GetName(), err)
		}
	}
	return nil
}

func createOrReplace(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing := obj.DeepCopyObject().(client.Object)
	if err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing); err != nil {
		return err
	}
	obj.SetResourceVersion(existing.GetResourceVersion())
	return c.Update(ctx, obj)
}

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
