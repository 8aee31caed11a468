int main_fn3(int x);
