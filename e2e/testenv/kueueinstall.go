package testenv

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// KueueInstallOptions configure KueueInstallManifests.
type KueueInstallOptions struct {
	// Image runs Kueue's manager; it must hold it at /manager, as Kueue's
	// Deployment runs it (hack/images kueue).
	Image string
	// Frameworks are the integrations Kueue manages; default: JobSet only.
	Frameworks []string
}

// KueueInstallManifests is Kueue's in-cluster install, as its own
// config/default of the pinned module renders it (kubectl kustomize), with
// the manager's image replaced, only the enabled integrations in its
// configuration and webhooks, and a smaller cpu request (test clusters
// share a few cores). Kueue manages its webhook certificates itself. The
// objects are in an order that removes cleanly too: webhook
// configurations and API services first (nothing calls a manager that is
// going away), CustomResourceDefinitions last.
func KueueInstallManifests(opts KueueInstallOptions) ([]byte, error) {
	if len(opts.Frameworks) == 0 {
		opts.Frameworks = []string{"jobset.x-k8s.io/jobset"}
	}
	src, err := KueueSourceDir()
	if err != nil {
		return nil, err
	}
	kubectl, err := Binary("kubectl")
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", filepath.Join(src, "config", "default"))
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s/config/default: %w\n%s", src, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("rendering config/default of %s: %w", KueueModule, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := adaptKueueObject(u, opts); err != nil {
			return nil, fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
		}
		objs = append(objs, u)
	}
	order := func(u *unstructured.Unstructured) int {
		switch u.GetKind() {
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService":
			return 0
		case "CustomResourceDefinition":
			return 2
		}
		return 1
	}
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int { return order(a) - order(b) })
	var buf bytes.Buffer
	for _, u := range objs {
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return nil, err
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	return buf.Bytes(), nil
}

// adaptKueueObject changes one object of Kueue's install as
// KueueInstallManifests says.
func adaptKueueObject(u *unstructured.Unstructured, opts KueueInstallOptions) error {
	wanted := kueueWebhookFilter(opts.Frameworks)
	switch u.GetKind() {
	case "Deployment":
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		for i := range containers {
			c := containers[i].(map[string]any)
			if c["name"] != "manager" {
				continue
			}
			c["image"], c["imagePullPolicy"] = opts.Image, "IfNotPresent"
			if err := unstructured.SetNestedField(c, "100m", "resources", "requests", "cpu"); err != nil {
				return err
			}
		}
		return unstructured.SetNestedSlice(u.Object, containers, "spec", "template", "spec", "containers")
	case "ConfigMap":
		data, _, _ := unstructured.NestedStringMap(u.Object, "data")
		const key = "controller_manager_config.yaml"
		if data[key] == "" {
			return nil
		}
		cfg := map[string]any{}
		if err := yaml.Unmarshal([]byte(data[key]), &cfg); err != nil {
			return err
		}
		cfg["integrations"] = map[string]any{"frameworks": opts.Frameworks}
		out, err := yaml.Marshal(cfg)
		if err != nil {
			return err
		}
		data[key] = string(out)
		return unstructured.SetNestedStringMap(u.Object, data, "data")
	case "MutatingWebhookConfiguration":
		w := &admissionv1.MutatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, w); err != nil {
			return err
		}
		w.Webhooks = slices.DeleteFunc(w.Webhooks, func(h admissionv1.MutatingWebhook) bool { return !wanted(h.Rules) })
		return toUnstructured(w, u)
	case "ValidatingWebhookConfiguration":
		w := &admissionv1.ValidatingWebhookConfiguration{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, w); err != nil {
			return err
		}
		w.Webhooks = slices.DeleteFunc(w.Webhooks, func(h admissionv1.ValidatingWebhook) bool { return !wanted(h.Rules) })
		return toUnstructured(w, u)
	}
	return nil
}

func toUnstructured(obj any, u *unstructured.Unstructured) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	u.Object = m
	return nil
}
