// Package fencetest installs what the hub's access to members relies on
// where tests and dev clusters install the hub without kustomize.
package fencetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
