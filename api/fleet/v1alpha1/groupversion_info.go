package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of the fleet API.
	GroupVersion = schema.GroupVersion{Group: "fleet.jobset.x-k8s.io", Version: "v1alpha1"}

	// SchemeBuilder registers the fleet types with a runtime.Scheme.
	// (apimachinery's builder: an API package needs no controller-runtime.)
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the fleet types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the fleet kinds under GroupVersion.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &JobSetDispatch{}, &JobSetDispatchList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
