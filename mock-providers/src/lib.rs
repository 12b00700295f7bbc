//! Mock OpenAI and Azure OpenAI servers.
