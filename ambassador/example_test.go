package ambassador_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/distkit/distkit/ambassador"
	"github.com/distkit/distkit/scattergather"
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

// Retries go to another replica when one answers 503, within a budget
// that a program's scatter/gathers can share.
func ExampleWithRetry() {
	var replicas []ambassador.BackendConfig
	for _, name := range []string{"sick", "well"} {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if name == "sick" {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, name)
		}))
		defer s.Close()
		replicas = append(replicas, ambassador.BackendConfig{Name: name, URL: s.URL})
	}
	budget, err := scattergather.NewBudget(0.2, 10) // retries up to 20% of requests, plus 10 a second
	if err != nil {
		panic(err)
	}
	r, err := ambassador.New(replicas,
		ambassador.WithPolicy(ambassador.RoundRobin()),
		ambassador.WithRetry(ambassador.Retry{Attempts: 2}),
		ambassador.WithBudget(budget))
	if err != nil {
		panic(err)
	}
	defer r.Close()
	client := &http.Client{Transport: r.Transport()}
	for range 2 {
		resp, err := client.Get("http://svc/")
		if err != nil {
			panic(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body))
	}
	for _, st := range r.Stats() {
		fmt.Printf("%s: %d tries, %d errors, %d retries\n", st.Name, st.Requests, st.Errors, st.Retries)
	}
	// Output:
	// 200 well
	// 200 well
	// sick: 2 tries, 2 errors, 0 retries
	// well: 2 tries, 0 errors, 2 retries
}
