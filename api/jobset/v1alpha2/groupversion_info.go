// Package v1alpha2 holds the JobSet API, group jobset.x-k8s.io. It is
// schema-compatible with upstream JobSet v0.12 so the same YAML applies to a
// single cluster running upstream JobSet, to a jobset-fleet member, or to the
// jobset-fleet hub.
//
// +kubebuilder:object:generate=true
// +groupName=jobset.x-k8s.io
package v1alpha2

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the JobSet API.
	GroupVersion = schema.GroupVersion{Group: "jobset.x-k8s.io", Version: "v1alpha2"}

	// SchemeBuilder registers the JobSet types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the JobSet types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
