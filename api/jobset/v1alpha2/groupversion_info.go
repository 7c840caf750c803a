// Package v1alpha2 holds the JobSet API, group jobset.x-k8s.io. It is
// schema-compatible with upstream JobSet v0.12 so the same YAML applies to a
// single cluster running upstream JobSet, to a jobset-fleet member, or to the
// jobset-fleet hub.
//
// +kubebuilder:object:generate=true
// +groupName=jobset.x-k8s.io
package v1alpha2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the JobSet API.
	GroupVersion = schema.GroupVersion{Group: "jobset.x-k8s.io", Version: "v1alpha2"}

	// SchemeBuilder registers the JobSet types with a runtime.Scheme.
	// (apimachinery's builder: an API package needs no controller-runtime.)
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the JobSet types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the JobSet kinds under GroupVersion.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &JobSet{}, &JobSetList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
