package ambassador_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/distkit/distkit/ambassador"
)

// An ambassador in the client's process: requests to "http://users/"
// go to the replicas, in turn.
func Example() {
	var replicas []ambassador.BackendConfig
	for _, name := range []string{"users-1", "users-2"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s served %s", name, r.URL.Path)
		}))
		defer s.Close()
		replicas = append(replicas, ambassador.BackendConfig{Name: name, URL: s.URL})
	}
	r, err := ambassador.New(replicas, ambassador.WithPolicy(ambassador.RoundRobin()))
	if err != nil {
		panic(err)
	}
	client := &http.Client{Transport: r.Transport()}
	for range 3 {
		resp, err := client.Get("http://users/profile/7")
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(body))
	}
	for _, st := range r.Stats() {
		fmt.Println(st.Name, st.Requests, "requests")
	}
	// Output:
	// users-1 served /profile/7
	// users-2 served /profile/7
	// users-1 served /profile/7
	// users-1 2 requests
	// users-2 1 requests
}

// The ambassador as a reverse proxy of its own: 503 with the reason
// while it has no backends.
func ExampleRouter_Proxy() {
	r, err := ambassador.New(nil)
	if err != nil {
		panic(err)
	}
	front := httptest.NewServer(r.Proxy())
	defer front.Close()
	resp, err := http.Get(front.URL)
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print(resp.StatusCode, " ", string(body))
	// Output: 503 Service Unavailable: no backends
}
